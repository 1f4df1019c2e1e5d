/* render: shared JSON pieces of the responses (render.h). */
#include "jout.h"
#include "render.h"

int
render_values(struct buf *b, const struct rules_values *v)
{
	if (JOUT_LIT(b, "{") != 0 || render_values_fields(b, v) != 0)
		return -1;
	return JOUT_LIT(b, "}");
}

int
render_values_fields(struct buf *b, const struct rules_values *v)
{
	if (JOUT_LIT(b, "\"partnerMembershipId\":") != 0 || jout_str(b, v->mid, v->mid_len) != 0 ||
	    JOUT_LIT(b, ",\"partnerTierName\":") != 0 || jout_str_or_null(b, v->tier, v->tier_len) != 0 ||
	    JOUT_LIT(b, ",\"partnerTierExpiryDate\":") != 0 || jout_date_or_null(b, v->exp, RULES_NONE) != 0 ||
	    JOUT_LIT(b, ",\"membershipStartDate\":") != 0 || jout_date_or_null(b, v->start, RULES_NONE) != 0 ||
	    JOUT_LIT(b, ",\"membershipEndDate\":") != 0 || jout_date_or_null(b, v->end, RULES_NONE) != 0)
		return -1;
	return 0;
}

int
render_status(struct buf *b, int code, const char *message)
{
	if (jout_lit(b, code == 200 || code == 1000 ? "{\"status\":true,\"message\":" :
	             "{\"status\":false,\"message\":") != 0 ||
	    jout_cstr(b, message ? message : rules_message(code)) != 0 || JOUT_LIT(b, ",\"code\":") != 0 ||
	    jout_i64(b, code) != 0)
		return -1;
	return JOUT_LIT(b, "}");
}
