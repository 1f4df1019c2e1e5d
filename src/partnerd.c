/*
 * partnerd: the FastCGI responder. main() reads the settings, opens the listening socket,
 * starts the worker threads (each with its own Redis connection) and a signal thread.
 *
 * Signals: every thread blocks them; the signal thread takes SIGTERM/SIGINT (stop: no
 * new requests, in-flight ones finish, then exit) and SIGHUP (reopen the log file).
 */
#include <errno.h>
#include <getopt.h>
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
#include "dates.h"
#include "http.h"
#include "metrics.h"
#include "rconn.h"
#include "routes.h"
#include "store.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif

#define DRAIN_SECONDS 10         /* hard bound on the drain after SIGTERM */
#define DRAIN_GRACE_MS 2000       /* keep serving kept-alive connections this long */

struct settings {
	const char *socket_path;        /* NULL: serve fd 0 */
	int socket_mode;
	int workers;
	const char *redis_url;
	int redis_timeout_ms;
	int auth_cache_s;
	const char *log_path;           /* NULL: stderr */
	struct routes_cfg routes;
	struct rconn_cfg redis;
};

static struct settings cfg;
static int listen_fd;
static atomic_int stopping;
static atomic_int in_flight;
static atomic_int *holding;     /* per worker: 1 while it keeps an nginx connection open */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_file;

static void
usage(FILE *f)
{
	fprintf(f,
	        "Usage: partnerd [options]\n"
	        "Serves the v2 partnerProgram API as a FastCGI responder (behind nginx).\n\n"
	        "  --socket PATH          unix socket to listen on (env PARTNERD_SOCKET);\n"
	        "                         without it, the socket on fd 0 (spawn-fcgi, systemd)\n"
	        "  --socket-mode MODE     octal mode of the socket (PARTNERD_SOCKET_MODE, 0660)\n"
	        "  --workers N            worker threads (PARTNERD_WORKERS, 64)\n"
	        "  --redis URL            redis://[:pw@]host[:port][/db] or unix:///path\n"
	        "                         (PARTNERD_REDIS_URL, redis://127.0.0.1:6379)\n"
	        "  --redis-timeout-ms N   connect and read/write timeout (PARTNERD_REDIS_TIMEOUT_MS, 1000)\n"
	        "  --max-body BYTES       request body limit (PARTNERD_MAX_BODY, 1048576)\n"
	        "  --lock-ttl-ms N        customer lock expiry (PARTNERD_LOCK_TTL_MS, 5000)\n"
	        "  --lock-wait-ms N       wait for a busy customer before 2010 (PARTNERD_LOCK_WAIT_MS, 1000)\n"
	        "  --auth-cache-s N       trust a verified credential for N s (PARTNERD_AUTH_CACHE_S, 60)\n"
	        "  --log FILE             append request logs to FILE (PARTNERD_LOG; default stderr)\n"
	        "  --history-max N        history entries kept per customer (PARTNERD_HISTORY_MAX, 100)\n"
	        "  --feed-max N           approximate length of each org's change feed (PARTNERD_FEED_MAX, 100000)\n"
	        "  --help, --version\n");
}

static const char *
env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? v : dflt;
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

static void
load_settings(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "socket-mode", required_argument, NULL, 'm' },
		{ "workers", required_argument, NULL, 'w' },
		{ "redis", required_argument, NULL, 'r' },
		{ "redis-timeout-ms", required_argument, NULL, 't' },
		{ "max-body", required_argument, NULL, 'b' },
		{ "lock-ttl-ms", required_argument, NULL, 'L' },
		{ "lock-wait-ms", required_argument, NULL, 'W' },
		{ "auth-cache-s", required_argument, NULL, 'a' },
		{ "log", required_argument, NULL, 'l' },
		{ "history-max", required_argument, NULL, 'H' },
		{ "feed-max", required_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *socket_mode = env_or("PARTNERD_SOCKET_MODE", "0660");
	const char *workers = env_or("PARTNERD_WORKERS", "64");
	const char *timeout = env_or("PARTNERD_REDIS_TIMEOUT_MS", "1000");
	const char *max_body = env_or("PARTNERD_MAX_BODY", "1048576");
	const char *ttl = env_or("PARTNERD_LOCK_TTL_MS", "5000");
	const char *wait = env_or("PARTNERD_LOCK_WAIT_MS", "1000");
	const char *cache = env_or("PARTNERD_AUTH_CACHE_S", "60");
	const char *hist = env_or("PARTNERD_HISTORY_MAX", "100");
	const char *feed = env_or("PARTNERD_FEED_MAX", "100000");
	char err[200];
	int c;

	cfg.socket_path = env_or("PARTNERD_SOCKET", NULL);
	cfg.redis_url = env_or("PARTNERD_REDIS_URL", "redis://127.0.0.1:6379");
	cfg.log_path = env_or("PARTNERD_LOG", NULL);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': cfg.socket_path = optarg; break;
		case 'm': socket_mode = optarg; break;
		case 'w': workers = optarg; break;
		case 'r': cfg.redis_url = optarg; break;
		case 't': timeout = optarg; break;
		case 'b': max_body = optarg; break;
		case 'L': ttl = optarg; break;
		case 'W': wait = optarg; break;
		case 'a': cache = optarg; break;
		case 'l': cfg.log_path = optarg; break;
		case 'H': hist = optarg; break;
		case 'F': feed = optarg; break;
		case 'h': usage(stdout); exit(0);
		case 'V': printf("partnerd %s\n", PACKAGE_VERSION); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "partnerd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		exit(2);
	}
	cfg.socket_mode = parse_int("--socket-mode", socket_mode, 8, 0, 0777);
	cfg.workers = parse_int("--workers", workers, 10, 1, 1024);
	cfg.redis_timeout_ms = parse_int("--redis-timeout-ms", timeout, 10, 10, 60000);
	cfg.routes.max_body = (size_t)parse_int("--max-body", max_body, 10, 1024, 64 << 20);
	cfg.routes.lock_ttl_ms = parse_int("--lock-ttl-ms", ttl, 10, 100, 600000);
	cfg.routes.lock_wait_ms = parse_int("--lock-wait-ms", wait, 10, 0, 60000);
	cfg.auth_cache_s = parse_int("--auth-cache-s", cache, 10, 0, 86400);
	cfg.routes.history_max = parse_int("--history-max", hist, 10, 1, 100000);
	cfg.routes.feed_max = parse_int("--feed-max", feed, 10, 100, 100000000);
	cfg.routes.test_stall_ms = parse_int("PARTNERD_TEST_STALL_BEFORE_COMMIT_MS",
	                                     env_or("PARTNERD_TEST_STALL_BEFORE_COMMIT_MS", "0"), 10, 0, 600000);
	if (rconn_parse_url(cfg.redis_url, &cfg.redis, err, sizeof(err)) != 0) {
		fprintf(stderr, "partnerd: --redis: %s\n", err);
		exit(2);
	}
	cfg.redis.timeout_ms = cfg.redis_timeout_ms;
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

static void
log_request(const struct http_req *r, const struct routes_outcome *o, double ms)
{
	char now[DATES_FMT_LEN + 1];

	dates_format(dates_now_ms(), now);
	pthread_mutex_lock(&log_lock);
	fprintf(log_file, "time=%s rid=%s org=%s route=%s method=%s status=%d items_ok=%d items_failed=%d ms=%.2f\n",
	        now, r->request_id, o->org, o->route, r->method, o->status, o->items_ok,
	        o->items_failed, ms);
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

	store_warm(st);         /* a Redis that is down now is retried at the first request */
	FCGX_InitRequest(&fr, listen_fd, 0);
	for (;;) {
		struct http_req r;
		struct routes_outcome o;
		struct timespec t0;

		if (FCGX_Accept_r(&fr) < 0) {
			struct timespec ts = { 0, 10 * 1000000L };

			atomic_store(held, 0);
			if (atomic_load(&stopping))
				break;
			nanosleep(&ts, NULL);   /* e.g. EMFILE: do not spin */
			continue;
		}
		atomic_fetch_add(&in_flight, 1);
		if (atomic_load(&stopping))
			fr.keepConnection = 0;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		memset(&o, 0, sizeof(o));
		http_req_init(&r, &fr);
		routes_handle(&cfg.routes, st, &r, &o);
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
	store_free(st);
	return NULL;
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
		/* Wake the threads blocked in accept: they see the error and leave. */
		shutdown(listen_fd, SHUT_RDWR);
		return NULL;
	}
}

int
main(int argc, char **argv)
{
	pthread_t *threads, sigthr;
	sigset_t set;
	int i;

	load_settings(argc, argv);
	if (sodium_init() < 0) {
		fprintf(stderr, "partnerd: libsodium failed to initialise\n");
		return 1;
	}
	open_log();
	if (FCGX_Init() != 0) {
		fprintf(stderr, "partnerd: FCGX_Init failed\n");
		return 1;
	}
	auth_init(cfg.auth_cache_s);

	if (cfg.socket_path != NULL) {
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
	} else {
		struct stat sb;

		if (fstat(0, &sb) != 0 || !S_ISSOCK(sb.st_mode)) {
			fprintf(stderr, "partnerd: no --socket given and fd 0 is not a listening socket\n");
			usage(stderr);
			return 2;
		}
		listen_fd = 0;
	}

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	threads = calloc((size_t)cfg.workers, sizeof(*threads));
	holding = calloc((size_t)cfg.workers, sizeof(*holding));
	if (threads == NULL || holding == NULL)
		abort();
	for (i = 0; i < cfg.workers; i++) {
		if (pthread_create(&threads[i], NULL, worker, &holding[i]) != 0) {
			fprintf(stderr, "partnerd: cannot start worker %d\n", i);
			return 1;
		}
	}
	fprintf(log_file, "partnerd %s: %d workers on %s, redis %s\n", PACKAGE_VERSION, cfg.workers,
	        cfg.socket_path ? cfg.socket_path : "fd 0", cfg.redis_url);
	pthread_create(&sigthr, NULL, signal_thread, &set);
	pthread_join(sigthr, NULL);

	/*
	 * Drain: requests already accepted finish with their real answer; requests nginx still
	 * sends on kept-alive connections are answered and their connections closed. Exit when
	 * nothing is in flight and no connection is held, or, when nginx keeps idle connections
	 * open, after DRAIN_GRACE_MS with nothing in flight (DRAIN_SECONDS at the most).
	 */
	for (i = 0; i < DRAIN_SECONDS * 100; i++) {
		struct timespec ts = { 0, 10 * 1000000L };

		if (!busy() || (i * 10 >= DRAIN_GRACE_MS && atomic_load(&in_flight) == 0))
			break;
		nanosleep(&ts, NULL);
	}
	if (cfg.socket_path != NULL)
		unlink(cfg.socket_path);
	fprintf(log_file, "partnerd: stopped\n");
	fflush(log_file);
	_exit(0);
}
