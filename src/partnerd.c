/*
 * partnerd: the FastCGI responder. main() reads the settings, opens the listening socket,
 * starts the worker threads (on one Redis each with its own Redis connection; their calls
 * go over the --redis-pipes shared ones, on a cluster N to each node) and a signal thread.
 *
 * Signals: every thread blocks them; the signal thread takes SIGTERM/SIGINT (stop: no
 * new requests, in-flight ones finish, then exit) and SIGHUP (reopen the log file).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <grp.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>
#include <sodium.h>

#include "auth.h"
#include "buf.h"
#include "cluster.h"
#include "dates.h"
#include "http.h"
#include "metrics.h"
#include "rconn.h"
#include "routes.h"
#include "store.h"
#include "store_layout.h"
#include "testfault.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif

#define DRAIN_SECONDS 10         /* hard bound on the drain after SIGTERM */
#define DRAIN_GRACE_MS 2000      /* keep serving kept-alive connections this long */
#define DEFAULT_PIPES 4          /* --redis-pipes on one Redis (docs/PERFORMANCE.md) */
#define DEFAULT_CLUSTER_PIPES 2  /* --redis-pipes on a cluster, to each node (the same) */

struct settings {
	const char *socket_path;        /* NULL: serve fd 0 */
	int socket_mode;
	const char *socket_group;       /* NULL: leave the socket's group as created */
	const char *user;               /* NULL: keep the user partnerd was started as */
	int workers;
	const char *redis_url;
	int redis_timeout_ms;
	int redis_pipes;                /* connections shared by the workers; 0: one each */
	int auth_cache_s;
	int login_fail_limit;           /* failed logins per username per window; 0: off */
	int login_fail_limit_addr;      /* failed logins per client address per window; 0: off */
	const char *log_path;           /* NULL: stderr */
	struct routes_cfg routes;
	struct rconn_cfg redis;
};

static struct settings cfg;
static struct store_share *pipes;       /* cfg.redis_pipes shared connections, or NULL */
static char cluster_name[320];  /* the log's name of a cluster (cluster_setting) */
static int listen_fd;
static atomic_int stopping;
static atomic_int in_flight;
static atomic_int *holding;     /* per worker: 1 while it keeps an nginx connection open */
static int wake_fd = -1;        /* eventfd, readable once SIGTERM arrived */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_file;

/* ---- settings: flag > environment > config file > default ---------------------------- */

struct setting {
	const char *name;               /* long flag, and key in the config file */
	const char *env;
	const char *dflt;               /* NULL: unset */
	const char *arg;                /* argument name in --help */
	const char *help;
	const char *value;              /* the value chosen */
};

static struct setting settings[] = {
	{ .name = "socket", .env = "PARTNERD_SOCKET", .dflt = NULL, .arg = "PATH",
	  .help = "unix socket to listen on; without it, the socket on fd 0 (spawn-fcgi, systemd)" },
	{ .name = "socket-mode", .env = "PARTNERD_SOCKET_MODE", .dflt = "0660", .arg = "MODE",
	  .help = "octal permissions of the socket" },
	{ .name = "socket-group", .env = "PARTNERD_SOCKET_GROUP", .dflt = NULL, .arg = "GROUP",
	  .help = "group of the socket (nginx's user must be in it)" },
	{ .name = "user", .env = "PARTNERD_USER", .dflt = NULL, .arg = "USER",
	  .help = "when started as root: run as this user (and its group)" },
	{ .name = "workers", .env = "PARTNERD_WORKERS", .dflt = "64", .arg = "N",
	  .help = "worker threads (on one Redis each keeps a Redis connection of its own; see --redis-pipes)" },
	{ .name = "redis", .env = "PARTNERD_REDIS_URL", .dflt = "redis://127.0.0.1:6379", .arg = "URL",
	  .help = "redis://[user:pw@]host[:port][/db] or unix:///path" },
	{ .name = "redis-cluster", .env = "PARTNERD_REDIS_CLUSTER", .dflt = NULL, .arg = "SEEDS",
	  .help = "a Redis Cluster: HOST:PORT[,HOST:PORT...] or redis-cluster://[[user]:pw@]HOST:PORT[,...]" },
	{ .name = "redis-pipes", .env = "PARTNERD_REDIS_PIPES", .dflt = NULL, .arg = "N",
	  .help = "share N Redis connections (on a cluster, N to each node) among the workers, "
	          "their concurrent calls written and read together (default 4 on one Redis, 2 "
	          "on a cluster; 0: each worker its own)" },
	{ .name = "redis-timeout-ms", .env = "PARTNERD_REDIS_TIMEOUT_MS", .dflt = "1000", .arg = "N",
	  .help = "connect and read/write timeout of every Redis call" },
	{ .name = "max-body", .env = "PARTNERD_MAX_BODY", .dflt = "1048576", .arg = "BYTES",
	  .help = "request body limit (413 above it)" },
	{ .name = "lock-ttl-ms", .env = "PARTNERD_LOCK_TTL_MS", .dflt = "5000", .arg = "N",
	  .help = "expiry of a customer lock" },
	{ .name = "lock-wait-ms", .env = "PARTNERD_LOCK_WAIT_MS", .dflt = "1000", .arg = "N",
	  .help = "wait for a busy customer before answering 2010" },
	{ .name = "auth-cache-s", .env = "PARTNERD_AUTH_CACHE_S", .dflt = "60", .arg = "N",
	  .help = "trust a verified credential for N seconds" },
	{ .name = "rate-limit", .env = "PARTNERD_RATE_LIMIT", .dflt = "0", .arg = "N",
	  .help = "requests per minute per credential, shared by all instances (0: off)" },
	{ .name = "login-fail-limit", .env = "PARTNERD_LOGIN_FAIL_LIMIT", .dflt = "20", .arg = "N",
	  .help = "failed logins per username per minute, shared by all instances; then 429 (0: off)" },
	{ .name = "login-fail-limit-addr", .env = "PARTNERD_LOGIN_FAIL_LIMIT_ADDR", .dflt = "100", .arg = "N",
	  .help = "failed logins per client address (REMOTE_ADDR) per minute; then 429 (0: off)" },
	{ .name = "history-max", .env = "PARTNERD_HISTORY_MAX", .dflt = "100", .arg = "N",
	  .help = "history entries kept per customer" },
	{ .name = "feed-max", .env = "PARTNERD_FEED_MAX", .dflt = "100000", .arg = "N",
	  .help = "approximate length of each org's change feed (256 partitions of N/256)" },
	{ .name = "log", .env = "PARTNERD_LOG", .dflt = NULL, .arg = "FILE",
	  .help = "append request logs to FILE (default stderr); SIGHUP reopens it" },
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static void
usage(FILE *f)
{
	size_t i;

	fprintf(f, "Usage: partnerd [--config FILE] [options]\n"
	           "Serves the v2 partnerProgram API as a FastCGI responder (behind nginx).\n"
	           "Each option can also be set by its environment variable or, as 'name = value',\n"
	           "in the config file (--config or PARTNERD_CONFIG); a flag wins over the\n"
	           "environment, which wins over the file.\n\n");
	for (i = 0; i < NSETTINGS; i++) {
		char flag[64];

		snprintf(flag, sizeof(flag), "--%s %s", settings[i].name, settings[i].arg);
		fprintf(f, "  %-24s %s\n  %-24s (%s%s%s)\n", flag, settings[i].help, "", settings[i].env,
		        settings[i].dflt ? ", default " : "", settings[i].dflt ? settings[i].dflt : "");
	}
	fprintf(f, "  %-24s %s\n  %-24s %s\n", "--config FILE", "read settings from FILE (PARTNERD_CONFIG)",
	        "--help, --version", "");
}

static struct setting *
setting_named(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < NSETTINGS; i++)
		if (strlen(settings[i].name) == len && strncmp(settings[i].name, name, len) == 0)
			return &settings[i];
	return NULL;
}

static const char *
get(const char *name)
{
	return setting_named(name, strlen(name))->value;
}

/*
 * Reads "name = value" lines ('#' starts a comment; blank lines are fine). Unknown names
 * are an error, so that a typo does not go unnoticed. Values are kept for the process.
 */
static void
read_config(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	int lineno = 0;

	if (f == NULL) {
		fprintf(stderr, "partnerd: cannot read config %s: %s\n", path, strerror(errno));
		exit(2);
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *p = line, *eq, *end, *v;
		struct setting *st;

		lineno++;
		p[strcspn(p, "#\r\n")] = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			continue;
		eq = strchr(p, '=');
		if (eq == NULL) {
			fprintf(stderr, "partnerd: %s:%d: expected 'name = value'\n", path, lineno);
			exit(2);
		}
		for (end = eq; end > p && (end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		st = setting_named(p, (size_t)(end - p));
		if (st == NULL) {
			fprintf(stderr, "partnerd: %s:%d: unknown setting '%.*s'\n", path, lineno, (int)(end - p), p);
			exit(2);
		}
		for (v = eq + 1; *v == ' ' || *v == '\t'; v++)
			;
		for (end = v + strlen(v); end > v && (end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		*end = '\0';
		st->value = strdup(v);
		if (st->value == NULL)
			abort();
	}
	fclose(f);
}

static int
parse_int(const char *what, const char *s, int base, int min, int max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, base);
	if (errno != 0 || *s == '\0' || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "partnerd: %s must be a number from %d to %d, not '%s'\n", what, min, max, s);
		exit(2);
	}
	return (int)v;
}

/*
 * The Redis Cluster setting: --redis-cluster SEEDS, or a redis-cluster:// URL given to
 * --redis (rconn_parse_url kept it in cfg.redis.cluster). Both at once are refused; the
 * seeds are checked now (exit 2 with the fault named), the nodes at the first call.
 */
static void
cluster_setting(void)
{
	const char *seeds = get("redis-cluster");
	struct setting *redis = setting_named("redis", 5);
	struct cluster_seeds parsed;
	char err[300];

	if (seeds != NULL && seeds[0] != '\0') {
		if (redis->value != redis->dflt) {
			fprintf(stderr, "partnerd: --redis and --redis-cluster both given: give one "
			        "Redis (--redis URL) or a cluster's seeds (--redis-cluster SEEDS), not "
			        "both\n");
			exit(2);
		}
		if (strlen(seeds) >= sizeof(cfg.redis.cluster)) {
			fprintf(stderr, "partnerd: --redis-cluster: the seed list is longer than %zu "
			        "bytes\n", sizeof(cfg.redis.cluster) - 1);
			exit(2);
		}
		memcpy(cfg.redis.cluster, seeds, strlen(seeds) + 1);
	}
	if (cfg.redis.cluster[0] == '\0')
		return;
	if (cluster_parse_seeds(cfg.redis.cluster, &parsed, err, sizeof(err)) != 0) {
		fprintf(stderr, "partnerd: --redis-cluster: %s\n", err);
		exit(2);
	}
	/* the log names the cluster by its first seed (never a password) */
	snprintf(cluster_name, sizeof(cluster_name), "cluster %s:%d (%zu seed%s)",
	         parsed.addr[0].host, parsed.addr[0].port, parsed.n, parsed.n == 1 ? "" : "s");
	cfg.redis_url = cluster_name;
}

static void
load_settings(int argc, char **argv)
{
	struct option opts[NSETTINGS + 4];
	const char *config = getenv("PARTNERD_CONFIG");
	char err[200];
	size_t i;
	int c, idx;

	for (i = 0; i < NSETTINGS; i++)
		opts[i] = (struct option){ settings[i].name, required_argument, NULL, 0 };
	opts[NSETTINGS] = (struct option){ "config", required_argument, NULL, 'c' };
	opts[NSETTINGS + 1] = (struct option){ "help", no_argument, NULL, 'h' };
	opts[NSETTINGS + 2] = (struct option){ "version", no_argument, NULL, 'V' };
	opts[NSETTINGS + 3] = (struct option){ NULL, 0, NULL, 0 };

	/* First pass: --config, --help, --version, and that every flag is known. */
	opterr = 1;
	while ((c = getopt_long(argc, argv, "", opts, &idx)) != -1) {
		if (c == 'c')
			config = optarg;
		else if (c == 'h') {
			usage(stdout);
			exit(0);
		} else if (c == 'V') {
			printf("partnerd %s\n", PACKAGE_VERSION);
			exit(0);
		} else if (c != 0) {
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "partnerd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		exit(2);
	}
	for (i = 0; i < NSETTINGS; i++)
		settings[i].value = settings[i].dflt;
	if (config != NULL && *config != '\0')
		read_config(config);
	for (i = 0; i < NSETTINGS; i++) {
		const char *e = getenv(settings[i].env);

		if (e != NULL && *e != '\0')
			settings[i].value = e;
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, &idx)) != -1)
		if (c == 0)
			settings[idx].value = optarg;

	cfg.socket_path = get("socket");
	cfg.socket_mode = parse_int("socket-mode", get("socket-mode"), 8, 0, 0777);
	cfg.socket_group = get("socket-group");
	cfg.user = get("user");
	cfg.workers = parse_int("workers", get("workers"), 10, 1, 1024);
	cfg.redis_url = get("redis");
	cfg.redis_timeout_ms = parse_int("redis-timeout-ms", get("redis-timeout-ms"), 10, 10, 60000);
	cfg.redis_pipes = get("redis-pipes") == NULL ? -1         /* the default, below */
	                  : parse_int("redis-pipes", get("redis-pipes"), 10, 0, 1024);
	cfg.routes.max_body = (size_t)parse_int("max-body", get("max-body"), 10, 1024, 64 << 20);
	cfg.routes.lock_ttl_ms = parse_int("lock-ttl-ms", get("lock-ttl-ms"), 10, 100, 600000);
	cfg.routes.lock_wait_ms = parse_int("lock-wait-ms", get("lock-wait-ms"), 10, 0, 60000);
	cfg.auth_cache_s = parse_int("auth-cache-s", get("auth-cache-s"), 10, 0, 86400);
	cfg.login_fail_limit = parse_int("login-fail-limit", get("login-fail-limit"), 10, 0, 100000000);
	cfg.login_fail_limit_addr = parse_int("login-fail-limit-addr", get("login-fail-limit-addr"), 10, 0, 100000000);
	cfg.routes.rate_limit = parse_int("rate-limit", get("rate-limit"), 10, 0, 100000000);
	cfg.routes.history_max = parse_int("history-max", get("history-max"), 10, 1, 100000);
	cfg.routes.feed_max = parse_int("feed-max", get("feed-max"), 10, 100, 100000000);
	cfg.log_path = get("log");
	if (rconn_parse_url(cfg.redis_url, &cfg.redis, err, sizeof(err)) != 0) {
		fprintf(stderr, "partnerd: --redis: %s\n", err);
		exit(2);
	}
	cluster_setting();
	cfg.redis.timeout_ms = cfg.redis_timeout_ms;
	if (cfg.redis_pipes < 0)
		cfg.redis_pipes = cfg.redis.cluster[0] != '\0' ? DEFAULT_CLUSTER_PIPES : DEFAULT_PIPES;
	if (cfg.redis_pipes > cfg.workers)
		cfg.redis_pipes = cfg.workers;  /* a worker uses one; more would stay idle */
}

static void
open_log(void)
{
	FILE *f;

	if (cfg.log_path == NULL) {
		log_file = stderr;
		return;
	}
	f = fopen(cfg.log_path, "a");
	if (f == NULL) {
		fprintf(stderr, "partnerd: cannot open log %s: %s\n", cfg.log_path, strerror(errno));
		if (log_file == NULL)
			exit(2);
		return;
	}
	setvbuf(f, NULL, _IOLBF, 0);
	pthread_mutex_lock(&log_lock);
	if (log_file != NULL && log_file != stderr)
		fclose(log_file);
	log_file = f;
	pthread_mutex_unlock(&log_lock);
}

/* Appends the C string v (glibc's "(null)" for NULL, as printf wrote) to line at *at. */
static int
line_put(char *line, size_t cap, size_t *at, const char *v)
{
	size_t n;

	if (v == NULL)
		v = "(null)";
	n = strlen(v);
	if (n >= cap - *at)
		return -1;
	memcpy(line + *at, v, n);
	*at += n;
	return 0;
}

/* v in decimal. */
static int
line_int(char *line, size_t cap, size_t *at, int v)
{
	char d[BUF_DEC_LEN + 1];

	d[BUF_DEC_LEN] = '\0';
	return line_put(line, cap, at, buf_dec(d, v));
}

/*
 * One line per request, built here and written with one fwrite (the stream is line
 * buffered: one write(2)), the same bytes as the fprintf of
 * "time=%s rid=%s org=%s route=%s method=%s status=%d items_ok=%d items_failed=%d ms=%.2f\n"
 * it replaced (printf's varargs cost about as much as the rest of the line; a line too long
 * for the buffer still goes through fprintf).
 */
static void
log_request(const struct http_req *r, const struct routes_outcome *o, double ms)
{
	char now[DATES_FMT_LEN + 1], msbuf[64], line[1024];
	size_t n = 0;
	int bad = 0;

	dates_format(dates_now_ms(), now);
	snprintf(msbuf, sizeof(msbuf), "%.2f", ms);
	bad |= line_put(line, sizeof(line), &n, "time=");
	bad |= line_put(line, sizeof(line), &n, now);
	bad |= line_put(line, sizeof(line), &n, " rid=");
	bad |= line_put(line, sizeof(line), &n, r->request_id);
	bad |= line_put(line, sizeof(line), &n, " org=");
	bad |= line_put(line, sizeof(line), &n, o->org);
	bad |= line_put(line, sizeof(line), &n, " route=");
	bad |= line_put(line, sizeof(line), &n, o->route);
	bad |= line_put(line, sizeof(line), &n, " method=");
	bad |= line_put(line, sizeof(line), &n, r->method);
	bad |= line_put(line, sizeof(line), &n, " status=");
	bad |= line_int(line, sizeof(line), &n, o->status);
	bad |= line_put(line, sizeof(line), &n, " items_ok=");
	bad |= line_int(line, sizeof(line), &n, o->items_ok);
	bad |= line_put(line, sizeof(line), &n, " items_failed=");
	bad |= line_int(line, sizeof(line), &n, o->items_failed);
	bad |= line_put(line, sizeof(line), &n, " ms=");
	bad |= line_put(line, sizeof(line), &n, msbuf);
	bad |= line_put(line, sizeof(line), &n, "\n");
	pthread_mutex_lock(&log_lock);
	if (bad == 0)
		fwrite(line, 1, n, log_file);
	else
		fprintf(log_file, "time=%s rid=%s org=%s route=%s method=%s status=%d items_ok=%d "
		        "items_failed=%d ms=%.2f\n", now, r->request_id, o->org, o->route, r->method,
		        o->status, o->items_ok, o->items_failed, ms);
	pthread_mutex_unlock(&log_lock);
}

static double
elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/*
 * The key layout of the data (store_layout.h): partnerd does not start when Redis answers
 * and holds data of another layout than 2 (layout 1 data: `partnerctl migrate` converts
 * it). A Redis that cannot be reached now is checked by each worker when it connects
 * (requests are answered 503 with the same message while the data is refused).
 */
static int
layout_refused(void)
{
	struct store *st = store_new(&cfg.redis);
	int refused;

	store_set_connect_check(st, store_layout_connect_check);
	refused = store_warm(st) != 0 && store_check_refused(st);
	if (refused) {
		fprintf(log_file, "partnerd: refusing to start: %s\n", store_error(st));
		fflush(log_file);
		if (log_file != stderr)
			fprintf(stderr, "partnerd: refusing to start: %s\n", store_error(st));
	}
	store_free(st);
	return refused;
}

/*
 * A worker serves requests until the process exits. After SIGTERM the listening socket is
 * shut down (no new connections), but nginx may still send requests on connections it
 * keeps alive (fastcgi_keep_conn): those are answered, and their connection is closed
 * after the answer so that nginx stops reusing it.
 */
static void *
worker(void *arg)
{
	struct store *st = store_new(&cfg.redis);
	atomic_int *held = arg;
	FCGX_Request fr;

	if (pipes != NULL)
		store_share(st, pipes, (int)(held - holding));

	store_set_connect_check(st, store_layout_connect_check);
	store_warm(st);         /* a Redis that is down now is retried at the first request */
	FCGX_InitRequest(&fr, listen_fd, 0);
	for (;;) {
		struct http_req r;
		struct routes_outcome o;
		struct timespec t0;
		uint64_t trips;

		/*
		 * Without a kept connection, wait for a new one or for the stop. The listening
		 * socket is non-blocking: a thread that loses the race for a connection gets
		 * EAGAIN from libfcgi's accept and comes back here instead of blocking in accept,
		 * where a stop could not reach it (a socket inherited on fd 0 may be shared with
		 * other processes, so it must not be shut down).
		 */
		if (fr.ipcFd < 0) {
			struct pollfd p[2] = { { .fd = listen_fd, .events = POLLIN },
			                       { .fd = wake_fd, .events = POLLIN } };

			atomic_store(held, 0);
			if (poll(p, 2, -1) < 0)
				continue;
			if (p[1].revents != 0)
				break;
		}
		if (FCGX_Accept_r(&fr) < 0) {
			atomic_store(held, 0);
			if (atomic_load(&stopping))
				break;
			continue;
		}
		atomic_fetch_add(&in_flight, 1);
		if (atomic_load(&stopping))
			fr.keepConnection = 0;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		memset(&o, 0, sizeof(o));
		http_req_init(&r, &fr);
		trips = store_round_trips(st);
		routes_handle(&cfg.routes, st, &r, &o);
		metrics_redis_rounds(o.route, (unsigned long)(store_round_trips(st) - trips));
		/*
		 * The one place Redis replies are released (store.h): the request is answered,
		 * so none of its replies is in use any more.
		 */
		store_replies_release(st);
		{
			double ms = elapsed_ms(&t0);

			metrics_request(o.route, o.status, ms / 1000.0);
			log_request(&r, &o, ms);
		}
		http_req_free(&r);
		FCGX_Finish_r(&fr);
		atomic_store(held, fr.ipcFd >= 0);
		atomic_fetch_sub(&in_flight, 1);
	}
	routes_thread_exit();
	store_free(st);
	return NULL;
}

/*
 * With --user, after the socket is open: leave root for that user and its groups. A
 * partnerd started as root without --user keeps running as root (and says so).
 */
static int
drop_privileges(void)
{
	struct passwd *pw;

	if (cfg.user == NULL) {
		if (geteuid() == 0)
			fprintf(stderr, "partnerd: running as root: consider --user\n");
		return 0;
	}
	pw = getpwnam(cfg.user);
	if (pw == NULL) {
		fprintf(stderr, "partnerd: --user %s: no such user\n", cfg.user);
		return -1;
	}
	if (geteuid() != 0) {
		if (geteuid() == pw->pw_uid)
			return 0;
		fprintf(stderr, "partnerd: --user %s needs partnerd to be started as root\n", cfg.user);
		return -1;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
	    setuid(pw->pw_uid) != 0) {
		fprintf(stderr, "partnerd: cannot become %s: %s\n", cfg.user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		fprintf(stderr, "partnerd: could regain root after dropping it: refusing to run\n");
		return -1;
	}
	return 0;
}

/* 1 while a request is being served or a worker keeps an nginx connection open. */
static int
busy(void)
{
	int i;

	if (atomic_load(&in_flight) > 0)
		return 1;
	for (i = 0; i < cfg.workers; i++)
		if (atomic_load(&holding[i]))
			return 1;
	return 0;
}

static void *
signal_thread(void *arg)
{
	sigset_t *set = arg;
	int sig;

	for (;;) {
		if (sigwait(set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			open_log();
			continue;
		}
		atomic_store(&stopping, 1);
		/* Wake the threads waiting for a connection: they leave. */
		if (write(wake_fd, &(uint64_t){ 1 }, sizeof(uint64_t)) < 0)
			perror("partnerd: eventfd");
		/* Our own socket: refuse new connections at once, so nginx tries another upstream. */
		if (cfg.socket_path != NULL)
			shutdown(listen_fd, SHUT_RDWR);
		return NULL;
	}
}

/* Listens on --socket: mode and group as configured. Returns 0, or 1 after saying why not. */
static int
listen_on_path(void)
{
	mode_t old = umask(0177);

	listen_fd = FCGX_OpenSocket(cfg.socket_path, 1024);
	umask(old);
	if (listen_fd < 0) {
		fprintf(stderr, "partnerd: cannot listen on %s: %s\n", cfg.socket_path, strerror(errno));
		return 1;
	}
	if (chmod(cfg.socket_path, (mode_t)cfg.socket_mode) != 0) {
		fprintf(stderr, "partnerd: chmod %s: %s\n", cfg.socket_path, strerror(errno));
		return 1;
	}
	if (cfg.socket_group != NULL) {
		struct group *g = getgrnam(cfg.socket_group);

		if (g == NULL || chown(cfg.socket_path, (uid_t)-1, g->gr_gid) != 0) {
			fprintf(stderr, "partnerd: cannot give %s to group %s: %s\n", cfg.socket_path,
			        cfg.socket_group, g == NULL ? "no such group" : strerror(errno));
			return 1;
		}
	}
	return 0;
}

/*
 * Sets listen_fd: the --socket path, else fd 0 when it is a listening socket (systemd
 * socket activation). Returns 0, or the exit status after saying why not.
 */
static int
listen_setup(void)
{
	struct stat sb;

	if (cfg.socket_path != NULL)
		return listen_on_path();
	if (fstat(0, &sb) != 0 || !S_ISSOCK(sb.st_mode)) {
		fprintf(stderr, "partnerd: no --socket given and fd 0 is not a listening socket\n");
		usage(stderr);
		return 2;
	}
	listen_fd = 0;
	return 0;
}

/* Starts the --workers worker threads. Returns 0, or 1 after saying why not. */
static int
start_workers(void)
{
	pthread_t *threads;
	int i;

	threads = calloc((size_t)cfg.workers, sizeof(*threads));
	holding = calloc((size_t)cfg.workers, sizeof(*holding));
	if (threads == NULL || holding == NULL)
		abort();
	if (cfg.redis_pipes > 0)
		pipes = store_share_new(&cfg.redis, cfg.redis_pipes);
	for (i = 0; i < cfg.workers; i++) {
		if (pthread_create(&threads[i], NULL, worker, &holding[i]) != 0) {
			fprintf(stderr, "partnerd: cannot start worker %d\n", i);
			return 1;
		}
	}
	return 0;
}

/*
 * Drain: requests already accepted finish with their real answer; requests nginx still
 * sends on kept-alive connections are answered and their connections closed. Returns when
 * nothing is in flight and no connection is held, or, when nginx keeps idle connections
 * open, after DRAIN_GRACE_MS with nothing in flight (DRAIN_SECONDS at the most).
 */
static void
drain(void)
{
	int i;

	for (i = 0; i < DRAIN_SECONDS * 100; i++) {
		struct timespec ts = { 0, 10 * 1000000L };

		if (!busy() || (i * 10 >= DRAIN_GRACE_MS && atomic_load(&in_flight) == 0))
			break;
		nanosleep(&ts, NULL);
	}
}

int
main(int argc, char **argv)
{
	pthread_t sigthr;
	sigset_t set;
	int rc;

	load_settings(argc, argv);
#ifdef PARTNERD_TEST_FAULTS
	testfault_init(cfg.redis.cluster[0] != '\0');
#endif
	if (sodium_init() < 0) {
		fprintf(stderr, "partnerd: libsodium failed to initialise\n");
		return 1;
	}
	open_log();
	if (FCGX_Init() != 0) {
		fprintf(stderr, "partnerd: FCGX_Init failed\n");
		return 1;
	}
	auth_init(&(struct auth_cfg){ .cache_seconds = cfg.auth_cache_s,
	                              .fail_limit_user = cfg.login_fail_limit,
	                              .fail_limit_addr = cfg.login_fail_limit_addr,
	                              .workers = cfg.workers });
	if (layout_refused())
		return 1;
	rc = listen_setup();
	if (rc != 0)
		return rc;
	if (drop_privileges() != 0)
		return 1;
	wake_fd = eventfd(0, EFD_CLOEXEC);
	if (wake_fd < 0 || fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK) != 0) {
		fprintf(stderr, "partnerd: cannot set up the listening socket: %s\n", strerror(errno));
		return 1;
	}

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (start_workers() != 0)
		return 1;
	fprintf(log_file, "partnerd %s: %d workers on %s, redis %s, %d shared Redis connection%s%s\n",
	        PACKAGE_VERSION, cfg.workers, cfg.socket_path ? cfg.socket_path : "fd 0", cfg.redis_url,
	        cfg.redis_pipes, cfg.redis_pipes == 1 ? "" : "s",
	        cfg.redis.cluster[0] != '\0' && cfg.redis_pipes > 0 ? " per node" : "");
	pthread_create(&sigthr, NULL, signal_thread, &set);
	pthread_join(sigthr, NULL);

	drain();
	if (cfg.socket_path != NULL)
		unlink(cfg.socket_path);
	fprintf(log_file, "partnerd: stopped\n");
	fflush(log_file);
	_exit(0);
}
