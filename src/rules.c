/*
 * rules: the business rules on one customer's snapshot (see rules.h). Pure.
 */
#include <stdlib.h>
#include <string.h>

#include "rules.h"
#include "xmalloc.h"

/* ---- messages --------------------------------------------------------------------------- */

const char *
rules_message(int code)
{
	switch (code) {
	case 200: return "Success";
	case 400: return "the request is not valid";
	case 1000: return "Customer successfully retrieved";
	case 2001: return "the change could not be stored; nothing of it was applied: retry";
	case 2002: return "a required field is missing or empty";
	case 2003: return "the tier expiry date must be in the future";
	case 2004: return "the customer is not linked to this partner program";
	case 2005: return "the customer is already linked to this partner program";
	case 2006: return "no such partner program in this org";
	case 2007: return "no such tier in this partner program";
	case 2008: return "too many entries: at most 50 customers per request and 50 programs per customer";
	case 2009: return "updateType must be UPGRADE, DOWNGRADE, RENEWAL or MEMBERSHIP_RELINKING_CANCELLED";
	case 2010: return "another change to this customer is in progress and did not finish in time: retry";
	case 2101: return "this partnerMembershipId is already held by another customer in this partner program";
	case 2102: return "this partner program appears more than once for the customer; only the first is processed";
	case 2103: return "not a valid date-time: use YYYY-MM-DDThh:mm:ss[.fff] followed by Z or +hh:mm";
	case 2104: return "the tier change contradicts updateType";
	case 2105: return "there is no pending relink to cancel";
	case 8015: return "no customer of this org matches the identifiers";
	case 8016: return "the identifiers do not all name the same customer";
	default: return "error";
	}
}

const char *const rules_event_name[] = {
	[EV_NONE] = "NONE", [EV_LINK] = "LINK", [EV_UPDATE] = "UPDATE", [EV_DELINK] = "DELINK",
	[EV_RELINK_SCHEDULED] = "RELINK_SCHEDULED", [EV_RELINK_CANCELLED] = "RELINK_CANCELLED",
};

void rules_result_free(struct rules_result *r);

static void
set(struct rules_result *r, int code, const char *message)
{
	rules_result_free(r);
	r->code = code;
	r->message = message ? message : rules_message(code);
}

/* An item that fails a rule: sets r (message NULL: the code's default). Returns -1. */
static int
refuse(struct rules_result *r, int code, const char *message)
{
	set(r, code, message);
	return -1;
}

/* ---- small helpers -------------------------------------------------------------------- */

static int
bytes_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

void
rules_result_free(struct rules_result *r)
{
	if (r->has_before)
		rules_values_free(&r->before);
	if (r->has_after)
		rules_values_free(&r->after);
	r->has_before = r->has_after = 0;
	r->event = EV_NONE;
}

/* Records a success with its event; before/after may be NULL. */
static void
success(struct rules_result *r, enum rules_event ev, const struct rules_values *before,
        const struct rules_values *after)
{
	rules_result_free(r);
	set(r, 200, NULL);
	r->event = ev;
	if (before != NULL) {
		rules_values_copy(&r->before, before);
		r->has_before = 1;
	}
	if (after != NULL) {
		rules_values_copy(&r->after, after);
		r->has_after = 1;
	}
}

/* ---- customers ------------------------------------------------------------------------ */

struct rules_slot *
rules_customer_slot(struct rules_customer *c, int pid, int create)
{
	struct rules_slot *s;
	size_t i;

	for (i = 0; i < c->nslots; i++)
		if (c->slots[i].pid == pid)
			return &c->slots[i];
	if (!create)
		return NULL;
	if (c->nslots == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 8;
		c->slots = realloc(c->slots, c->cap * sizeof(*c->slots));
		if (c->slots == NULL)
			abort();
	}
	s = &c->slots[c->nslots++];
	memset(s, 0, sizeof(*s));
	s->pid = pid;
	return s;
}

int
rules_customer_load_slot(struct rules_customer *c, int pid, const char *val, size_t len)
{
	struct rules_membership m;
	struct rules_slot *s;

	if (rules_membership_parse(val, len, &m) != 0)
		return -1;
	s = rules_customer_slot(c, pid, 1);
	rules_membership_free(&s->m);
	s->m = m;
	s->present = s->was_present = 1;
	s->orig_mid = xmemdup(m.v.mid, m.v.mid_len);
	s->orig_mid_len = m.v.mid_len;
	if (m.has_relink) {
		s->orig_rl_mid = xmemdup(m.rl.mid, m.rl.mid_len);
		s->orig_rl_mid_len = m.rl.mid_len;
	}
	return 0;
}

void
rules_customer_free(struct rules_customer *c)
{
	size_t i;

	for (i = 0; i < c->nslots; i++) {
		rules_membership_free(&c->slots[i].m);
		free(c->slots[i].orig_mid);
		free(c->slots[i].orig_rl_mid);
	}
	free(c->slots);
	memset(c, 0, sizeof(*c));
}

int
rules_settle(struct rules_customer *c, int64_t now_ms)
{
	size_t i;
	int n = 0;

	for (i = 0; i < c->nslots; i++) {
		struct rules_slot *s = &c->slots[i];

		if (s->present && s->m.has_relink && s->m.rl.start <= now_ms) {
			rules_values_free(&s->m.v);
			s->m.v = s->m.rl;
			memset(&s->m.rl, 0, sizeof(s->m.rl));
			s->m.has_relink = 0;
			s->m.updated_on = s->m.v.start;
			s->dirty = 1;
			n++;
		}
	}
	return n;
}

const char *
rules_state(const struct rules_membership *m, int64_t now_ms)
{
	if (m->v.start > now_ms)
		return "PENDING";
	if (m->v.end != RULES_NONE && m->v.end <= now_ms)
		return "ENDED";
	if (m->v.exp != RULES_NONE && m->v.exp <= now_ms)
		return "TIER_EXPIRED";
	return "ACTIVE";
}

/* ---- the rules, one route each -------------------------------------------------------- */

/* 1 when an earlier item of the entry names the same program. */
static int
repeated_program(const struct req_entry *e, size_t k)
{
	const struct str *p = &e->items[k].program.s;
	size_t j;

	for (j = 0; j < k; j++) {
		const struct req_field *q = &e->items[j].program;

		if (q->st == F_OK && bytes_eq(q->s.p, q->s.len, p->p, p->len))
			return 1;
	}
	return 0;
}

/* Checks common to every route: name given, not repeated, program exists. */
static int
check_program(const struct req_entry *e, size_t k, const struct rules_program *p,
              int refuse_expired, int64_t now, struct rules_result *r)
{
	if (e->items[k].program.st != F_OK)
		return refuse(r, 2002, "partnerProgramName is required (a non-empty string)");
	if (repeated_program(e, k))
		return refuse(r, 2102, NULL);
	if (!p->found)
		return refuse(r, 2006, NULL);
	if (refuse_expired && p->expires_at != RULES_NONE && p->expires_at <= now)
		return refuse(r, 2006, "the partner program has expired: no new links are accepted");
	return 0;
}

/*
 * link, SPEC §4.1 in order; each check sets r and returns -1 when the item fails it.
 * customerPartnerReference given (2002), then its dates parse (2103).
 */
static int
link_check_reference(const struct req_item *it, const struct rules_program *p,
                     struct rules_result *r)
{
	if (it->reference != F_OK)
		return refuse(r, 2002, "customerPartnerReference is required (an object)");
	if (it->expiry.st == F_BADVALUE)
		return refuse(r, 2103, "partnerTierExpiryDate is not a valid date-time: use YYYY-MM-DDThh:mm:ss[.fff] followed by Z or +hh:mm");
	if (it->start.st == F_BADVALUE)
		return refuse(r, 2103, "membershipStartDate is not a valid date-time: use YYYY-MM-DDThh:mm:ss[.fff] followed by Z or +hh:mm");
	/* start + cycle past 9999-12-31 cannot be stored or shown: refused, never clamped. */
	if (it->start.st == F_OK && p->has_cycle &&
	    dates_add_cycle(it->start.ms, p->cycle_unit, p->cycle_n) > DATES_MAX_MS)
		return refuse(r, 2103, "membershipStartDate is too late: the membership would end (start + the program's membership cycle) after 9999-12-31T23:59:59.999Z");
	return 0;
}

/*
 * link to a program the customer is linked to (slot s present): 2005, unless it is a
 * relink (a future start on a SUPPLEMENTARY program) and none is pending yet.
 */
static int
link_check_relink(const struct rules_slot *s, const struct rules_program *p,
                  const struct req_item *it, int64_t now, struct rules_result *r)
{
	if (!p->supplementary || it->start.st != F_OK || it->start.ms <= now)
		return refuse(r, 2005, NULL);
	if (s->m.has_relink)
		return refuse(r, 2005, "a relink is already pending for this partner program");
	return 0;
}

/* link: partnerMembershipId given (2002) and not held by another customer (2101). */
static int
link_check_mid(const struct req_item *it, const struct rules_item_ctx *ctx, int64_t cid,
               struct rules_result *r)
{
	if (it->mid.st != F_OK)
		return refuse(r, 2002, "partnerMembershipId is required (a non-empty string)");
	if (ctx->mid_holder != 0 && ctx->mid_holder != cid)
		return refuse(r, 2101, NULL);
	return 0;
}

/* link: a tier required and valid for a tier-based program (2002, 2007), none for another (2007). */
static int
link_check_tier(const struct req_item *it, const struct rules_program *p, struct rules_result *r)
{
	if (p->ntiers == 0)
		return it->tier.st == F_ABSENT ? 0 :
		       refuse(r, 2007, "this partner program has no tiers: leave partnerTierName out");
	if (it->tier.st != F_OK)
		return refuse(r, 2002, "partnerTierName is required for a tier-based partner program");
	if (rules_program_tier(p, it->tier.s.p, it->tier.s.len) < 0)
		return refuse(r, 2007, NULL);
	return 0;
}

/* link: the expiry, when given, in the future; the membership not ended at once (2003). */
static int
link_check_future(const struct req_item *it, const struct rules_program *p, int64_t now,
                  struct rules_result *r)
{
	if (it->expiry.st == F_OK && it->expiry.ms <= now)
		return refuse(r, 2003, "partnerTierExpiryDate must be in the future");
	/* A membership that would be ENDED the moment it is stored is refused (SPEC §5). */
	if (p->has_cycle && it->start.st == F_OK &&
	    dates_add_cycle(it->start.ms, p->cycle_unit, p->cycle_n) <= now)
		return refuse(r, 2003, "the membership would already have ended: membershipStartDate plus the program's membership cycle must be in the future");
	return 0;
}

/* The values a valid link item stores (owned strings in v). */
static void
link_values(const struct req_item *it, const struct rules_program *p, int64_t now,
            struct rules_values *v)
{
	memset(v, 0, sizeof(*v));
	v->mid = xmemdup(it->mid.s.p, it->mid.s.len);
	v->mid_len = it->mid.s.len;
	if (p->ntiers > 0) {
		v->tier = xmemdup(it->tier.s.p, it->tier.s.len);
		v->tier_len = it->tier.s.len;
	}
	v->exp = it->expiry.st == F_OK ? it->expiry.ms : RULES_NONE;
	v->start = it->start.st == F_OK ? it->start.ms : now;
	v->end = p->has_cycle ? dates_add_cycle(v->start, p->cycle_unit, p->cycle_n) : RULES_NONE;
}

static void
link_item(struct rules_customer *c, const struct req_entry *e, size_t k,
          const struct rules_item_ctx *ctx, int64_t now, struct rules_result *r)
{
	const struct req_item *it = &e->items[k];
	const struct rules_program *p = ctx->prog;
	struct rules_slot *s;
	struct rules_values v;
	int relink;

	if (check_program(e, k, p, 1, now, r) != 0 || link_check_reference(it, p, r) != 0)
		return;
	s = rules_customer_slot(c, p->pid, 0);
	relink = s != NULL && s->present;
	if ((relink && link_check_relink(s, p, it, now, r) != 0) ||
	    link_check_mid(it, ctx, c->cid, r) != 0 || link_check_tier(it, p, r) != 0 ||
	    link_check_future(it, p, now, r) != 0)
		return;

	link_values(it, p, now, &v);
	if (s == NULL)
		s = rules_customer_slot(c, p->pid, 1);
	if (relink) {
		s->m.rl = v;
		s->m.has_relink = 1;
		success(r, EV_RELINK_SCHEDULED, &s->m.v, &s->m.rl);
	} else {
		rules_membership_free(&s->m);
		s->m.v = v;
		s->m.linked_on = now;
		s->present = 1;
		success(r, EV_LINK, NULL, &s->m.v);
	}
	s->m.updated_on = now;
	s->dirty = 1;
}

/* update MEMBERSHIP_RELINKING_CANCELLED: removes the pending relink, 2105 when none. */
static void
cancel_relink(struct rules_slot *s, int64_t now, struct rules_result *r)
{
	if (!s->m.has_relink) {
		set(r, 2105, NULL);
		return;
	}
	success(r, EV_RELINK_CANCELLED, &s->m.rl, NULL);
	rules_values_free(&s->m.rl);
	s->m.has_relink = 0;
	s->m.updated_on = now;
	s->dirty = 1;
}

/*
 * update, a tier move, SPEC §4.2 in order: updateDetails and updatedTierName given (2002),
 * the program tier based (2007), the tier one of its tiers (2007), the move in the
 * direction of updateType (2104). Returns the new tier's index, or -1 with r set.
 */
static int
update_check_tier(const struct req_item *it, const struct rules_program *p,
                  const struct rules_slot *s, struct rules_result *r)
{
	int cur, next;

	if (it->details != F_OK)
		return refuse(r, 2002, "updateDetails is required (an object) for a tier change");
	if (it->new_tier.st != F_OK)
		return refuse(r, 2002, "updateDetails.updatedTierName is required (a non-empty string)");
	if (p->ntiers == 0)
		return refuse(r, 2007, "this partner program has no tiers");
	next = rules_program_tier(p, it->new_tier.s.p, it->new_tier.s.len);
	if (next < 0)
		return refuse(r, 2007, NULL);
	cur = rules_program_tier(p, s->m.v.tier, s->m.v.tier_len);
	if ((it->utype == UPD_UPGRADE && next <= cur) ||
	    (it->utype == UPD_DOWNGRADE && (cur < 0 || next >= cur)) ||
	    (it->utype == UPD_RENEWAL && next != cur))
		return refuse(r, 2104, it->utype == UPD_UPGRADE ? "an UPGRADE must move to a higher tier than the current one" :
		              it->utype == UPD_DOWNGRADE ? "a DOWNGRADE must move to a lower tier than the current one" :
		              "a RENEWAL must keep the current tier");
	return next;
}

/* update: the new expiry, when given, parses (2103) and is in the future (2003). */
static int
update_check_expiry(const struct req_item *it, int64_t now, struct rules_result *r)
{
	if (it->new_expiry.st == F_BADVALUE)
		return refuse(r, 2103, "updatedTierExpiryDate is not a valid date-time: use YYYY-MM-DDThh:mm:ss[.fff] followed by Z or +hh:mm");
	if (it->new_expiry.st == F_OK && it->new_expiry.ms <= now)
		return refuse(r, 2003, "updatedTierExpiryDate must be in the future");
	return 0;
}

static void
update_item(struct rules_customer *c, const struct req_entry *e, size_t k,
            const struct rules_item_ctx *ctx, int64_t now, struct rules_result *r)
{
	const struct req_item *it = &e->items[k];
	const struct rules_program *p = ctx->prog;
	struct rules_values before;
	struct rules_slot *s;
	int next;

	if (check_program(e, k, p, 0, now, r) != 0)
		return;
	s = rules_customer_slot(c, p->pid, 0);
	if (s == NULL || !s->present) {
		set(r, 2004, NULL);
		return;
	}
	if (it->update_type.st != F_OK) {
		set(r, 2002, "updateType is required (a non-empty string)");
		return;
	}
	if (it->utype == UPD_NONE) {
		set(r, 2009, NULL);
		return;
	}
	if (it->utype == UPD_RELINK_CANCEL) {
		cancel_relink(s, now, r);
		return;
	}
	if ((next = update_check_tier(it, p, s, r)) < 0 || update_check_expiry(it, now, r) != 0)
		return;

	rules_values_copy(&before, &s->m.v);
	free(s->m.v.tier);
	s->m.v.tier = xmemdup(p->tiers[next], p->tier_len[next]);
	s->m.v.tier_len = p->tier_len[next];
	if (it->new_expiry.st == F_OK)
		s->m.v.exp = it->new_expiry.ms;
	success(r, EV_UPDATE, &before, &s->m.v);
	rules_values_free(&before);
	s->m.updated_on = now;
	s->dirty = 1;
}

static void
delink_item(struct rules_customer *c, const struct req_entry *e, size_t k,
            const struct rules_item_ctx *ctx, int64_t now, struct rules_result *r)
{
	const struct rules_program *p = ctx->prog;
	struct rules_slot *s;

	if (check_program(e, k, p, 0, now, r) != 0)
		return;
	s = rules_customer_slot(c, p->pid, 0);
	if (s == NULL || !s->present) {
		set(r, 2004, NULL);
		return;
	}
	success(r, EV_DELINK, &s->m.v, NULL);
	rules_membership_free(&s->m);
	s->present = 0;
	s->dirty = 1;
}

/* 1 when the customer's membership of program pid (or its pending relink) holds a
 * membership id or tier name over REQ_NAME_MAX bytes: stored before that limit. */
static int
oversized_membership(struct rules_customer *c, int pid)
{
	const struct rules_slot *s = rules_customer_slot(c, pid, 0);

	if (s == NULL || !s->present)
		return 0;
	return s->m.v.mid_len > REQ_NAME_MAX || s->m.v.tier_len > REQ_NAME_MAX ||
	       (s->m.has_relink && (s->m.rl.mid_len > REQ_NAME_MAX || s->m.rl.tier_len > REQ_NAME_MAX));
}

void
rules_apply(enum req_kind kind, struct rules_customer *c, const struct req_entry *entry,
            const struct rules_item_ctx *ctx, int64_t now_ms, struct rules_result *results)
{
	size_t k;

	rules_settle(c, now_ms);
	for (k = 0; k < entry->nitems; k++) {
		/* A field over its byte limit (request.h) fails the item before any rule. */
		if (entry->items[k].too_long != NULL) {
			set(&results[k], 2002, entry->items[k].too_long);
			continue;
		}
		/*
		 * A membership stored before the limits with a value over them would put that
		 * value into the history and the feed (an UPDATE twice) at every change: only a
		 * delink, which writes it once more and frees it, is applied to it.
		 */
		if (kind != REQ_DELINK && ctx[k].prog != NULL && ctx[k].prog->found &&
		    oversized_membership(c, ctx[k].prog->pid)) {
			set(&results[k], 2002, "the stored membership of this partner program has a "
			    "partnerMembershipId or partnerTierName over 128 bytes (stored before that "
			    "limit): delink it, then link it again");
			continue;
		}
		switch (kind) {
		case REQ_LINK:
			link_item(c, entry, k, &ctx[k], now_ms, &results[k]);
			break;
		case REQ_UPDATE:
			update_item(c, entry, k, &ctx[k], now_ms, &results[k]);
			break;
		case REQ_DELINK:
			delink_item(c, entry, k, &ctx[k], now_ms, &results[k]);
			break;
		}
	}
}


/* ---- what a commit writes ---------------------------------------------------------- */

static int
same(const char *a, size_t alen, const char *b, size_t blen)
{
	return a != NULL && b != NULL && alen == blen && memcmp(a, b, alen) == 0;
}

/* The slot holds mid now (current or pending relink). */
static int
holds(const struct rules_slot *s, const char *mid, size_t len)
{
	return s->present && (same(s->m.v.mid, s->m.v.mid_len, mid, len) ||
	                      (s->m.has_relink && same(s->m.rl.mid, s->m.rl.mid_len, mid, len)));
}

/* The slot held mid when read. */
static int
held(const struct rules_slot *s, const char *mid, size_t len)
{
	return same(s->orig_mid, s->orig_mid_len, mid, len) ||
	       same(s->orig_rl_mid, s->orig_rl_mid_len, mid, len);
}

static void
mid_ref(struct rules_mid_ref *r, size_t *n, int pid, const char *mid, size_t len)
{
	r[*n] = (struct rules_mid_ref){ .pid = pid, .mid = mid, .len = len };
	(*n)++;
}

void
rules_slot_change(const struct rules_slot *s, struct rules_slot_change *ch)
{
	memset(ch, 0, sizeof(*ch));
	if (!s->dirty)
		return;
	ch->set = s->present;
	ch->del = !s->present && s->was_present;
	if (s->present) {
		if (!held(s, s->m.v.mid, s->m.v.mid_len) || s->orig_rl_mid != NULL)
			mid_ref(ch->claim, &ch->nclaim, s->pid, s->m.v.mid, s->m.v.mid_len);
		if (s->m.has_relink && !held(s, s->m.rl.mid, s->m.rl.mid_len) &&
		    !(s->m.rl.mid_len == s->m.v.mid_len && memcmp(s->m.rl.mid, s->m.v.mid, s->m.v.mid_len) == 0))
			mid_ref(ch->claim, &ch->nclaim, s->pid, s->m.rl.mid, s->m.rl.mid_len);
	}
	if (s->orig_mid && !holds(s, s->orig_mid, s->orig_mid_len))
		mid_ref(ch->release, &ch->nrelease, s->pid, s->orig_mid, s->orig_mid_len);
	if (s->orig_rl_mid && !holds(s, s->orig_rl_mid, s->orig_rl_mid_len) &&
	    !same(s->orig_mid, s->orig_mid_len, s->orig_rl_mid, s->orig_rl_mid_len))
		mid_ref(ch->release, &ch->nrelease, s->pid, s->orig_rl_mid, s->orig_rl_mid_len);
}

/* ---- membership ids claimed within one request ---------------------------------------- */

void
rules_claims_lookup(const struct rules_claims *c, int pid, const char *mid, size_t len, int64_t *holder)
{
	size_t i;

	for (i = c->n; i-- > 0;) {
		if (c->v[i].pid == pid && c->v[i].len == len && memcmp(c->v[i].mid, mid, len) == 0) {
			*holder = c->v[i].cid;
			return;
		}
	}
}

static void
claims_set(struct rules_claims *c, int pid, const char *mid, size_t len, int64_t cid)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 16;
		c->v = xrealloc(c->v, c->cap * sizeof(*c->v));
	}
	c->v[c->n++] = (struct rules_claim){ .pid = pid, .mid = mid, .len = len, .cid = cid };
}

void
rules_claims_note(struct rules_claims *c, int pid, const struct rules_result *res, int64_t cid)
{
	if (res->code == 200 && (res->event == EV_LINK || res->event == EV_RELINK_SCHEDULED))
		claims_set(c, pid, res->after.mid, res->after.mid_len, cid);
	else if (res->code == 200 && res->event == EV_DELINK)
		claims_set(c, pid, res->before.mid, res->before.mid_len, 0);
}

void
rules_claims_free(struct rules_claims *c)
{
	free(c->v);
	memset(c, 0, sizeof(*c));
}
