/*
 * main.c - freshd: parse flags, load the index, open the engine, serve
 * until SIGTERM or SIGINT, shut down in order.
 *
 * Signals: SIGTERM and SIGINT are caught by a handler that writes to a
 * pipe the main thread waits on (the self-pipe trick). A mask alone is not
 * enough: libraries start threads before main() runs (OpenBLAS does), and
 * a signal delivered to one of those with the default action would kill
 * the process instead of shutting it down. Our own threads start with the
 * signals blocked, and the main thread unblocks them only to wait; the
 * handler does not ask for SA_RESTART, so a wait is interrupted and
 * retried (ThreadSanitizer runs handlers at such points only).
 * Shutdown: stop accepting, abandon a running refit (its pairs are in the
 * log), let in-flight requests finish, stop the dispatcher, close the
 * engine (which syncs the log).
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "coord.h"
#include "log.h"
#include "progress.h"
#include "server.h"

static void engine_log(void *ctx, enum fresh_log_level level, const char *msg)
{
	(void)ctx;
	srv_log(level == FRESH_LOG_ERROR  ? SRV_ERROR
		: level == FRESH_LOG_WARN ? SRV_WARN
					  : SRV_INFO,
		"%s", msg);
}

static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char c = (unsigned char)sig;
	ssize_t w = write(signal_pipe[1], &c, 1);

	(void)w;
	errno = saved;
}

static void catch_signals(void)
{
	struct sigaction sa;

	if (pipe2(signal_pipe, O_CLOEXEC) != 0)
		signal_pipe[0] = signal_pipe[1] = -1;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Blocks (how = SIG_BLOCK) or unblocks SIGTERM and SIGINT in this thread. */
static void mask_signals(int how)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(how, &set, NULL);
}

/* Whether a signal arrived (without consuming it). */
static bool signalled(void)
{
	struct pollfd p = {signal_pipe[0], POLLIN, 0};

	return poll(&p, 1, 0) == 1;
}

/* Blocks until SIGTERM or SIGINT; returns its number. */
static int wait_for_signal(void)
{
	unsigned char c = 0;

	while (read(signal_pipe[0], &c, 1) != 1)
		if (errno != EINTR)
			return SIGTERM; /* no pipe: stop rather than hang */
	return c;
}

static int die(const char *msg)
{
	fprintf(stderr, "freshd: %s\n", msg);
	return 1;
}

static double unix_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int load_index(struct srv_server *srv, struct fresh_index **idx)
{
	static char ref_path[4096], ref_ids[4096];
	struct fresh_error err;
	char msg[700];
	size_t n, d;

	/* A reload recorded in the data dir wins over --index / --demo. */
	if (fresh_engine_recorded_index(srv->cfg.engine.data_dir, ref_path,
					sizeof ref_path, ref_ids,
					sizeof ref_ids) == FRESH_OK) {
		srv_log(SRV_WARN,
			"serving %s, recorded in the data dir by an index "
			"reload (it overrides %s)",
			ref_path, srv->cfg.demo ? "--demo" : "--index");
		srv->cfg.index_path = ref_path;
		srv->cfg.ids_path = ref_ids[0] ? ref_ids : NULL;
		if (srv->cfg.demo) {
			/* The demo encoder still answers the demo endpoints. */
			if (fresh_demo_create(srv->cfg.demo_size,
					      srv->cfg.demo_dim, srv->cfg.seed,
					      &srv->demo) != FRESH_OK)
				return die("out of memory building the demo");
		}
		srv->cfg.demo = false;
	}
	if (srv->cfg.demo) {
		if (fresh_demo_create(srv->cfg.demo_size, srv->cfg.demo_dim,
				      srv->cfg.seed, &srv->demo) != FRESH_OK)
			return die("out of memory building the demo corpus");
		*idx = fresh_demo_index(srv->demo);
		if (fresh_engine_index_store(*idx, srv->cfg.engine.store,
					     &err) != FRESH_OK) {
			snprintf(msg, sizeof msg, "%s", err.msg);
			return die(msg);
		}
		srv_log(SRV_INFO, "demo corpus: %zu targets x %zu (seed %llu)",
			srv->cfg.demo_size, srv->cfg.demo_dim,
			(unsigned long long)srv->cfg.seed);
	} else if (fresh_engine_index_load(srv->cfg.index_path,
					   srv->cfg.ids_path,
					   srv->cfg.engine.store, idx, &n, &d,
					   &err) != FRESH_OK) {
		snprintf(msg, sizeof msg, "%s", err.msg);
		return die(msg);
	} else {
		srv_log(SRV_INFO, "index %s: %zu targets x %zu",
			srv->cfg.index_path, n, d);
	}
	srv->index_loaded_at = unix_now();
	return 0;
}

/* freshd --shards: serves until a signal, then stops in order. */
static int run_coordinator(struct srv_server *srv)
{
	struct srv_http *http = NULL;
	char err[1024];
	int sig;

	if (srv_coord_start(srv, err, sizeof err) != FRESH_OK)
		return die(err);
	if (srv_http_start(srv, &http, err, sizeof err) != FRESH_OK) {
		srv_coord_stop(srv->coord);
		return die(err);
	}
	mask_signals(SIG_UNBLOCK);
	sig = wait_for_signal();
	srv_log(SRV_INFO, "signal %d: shutting down", sig);
	srv_http_quiesce(http);
	srv_coord_quiesce(srv->coord);
	srv_http_stop(http);
	srv_coord_stop(srv->coord);
	srv_log(SRV_INFO, "stopped");
	return 0;
}

int main(int argc, char **argv)
{
	static struct srv_server srv;
	struct srv_http *http = NULL;
	struct srv_progress *progress;
	struct fresh_index *idx = NULL;
	struct fresh_error ferr;
	char err[1024];
	int sig;

	catch_signals();
	mask_signals(SIG_BLOCK); /* inherited by every thread we start */
	switch (srv_config_parse(argc, argv, &srv.cfg, err, sizeof err)) {
	case SRV_CONFIG_EXIT:
		return 0;
	case SRV_CONFIG_ERROR:
		fprintf(stderr, "freshd: %s\n", err);
		return 2;
	case SRV_CONFIG_OK:
		break;
	}
	srv_log_setup(srv.cfg.log_json, (enum srv_level)srv.cfg.log_level);
	srv.started_at = unix_now();

	if (srv.cfg.api_key_file &&
	    !srv_read_key(srv.cfg.api_key_file, srv.write_key,
			  sizeof srv.write_key, err, sizeof err))
		return die(err);
	if (srv.cfg.read_key_file &&
	    !srv_read_key(srv.cfg.read_key_file, srv.read_key,
			  sizeof srv.read_key, err, sizeof err))
		return die(err);
	if (getenv("FRESHD_TEST_SIMULATE_POWER_LOSS")) {
		/* Crash tests: unsynced log writes die with the process. */
		srv.cfg.engine.simulate_power_loss = true;
		srv_log(SRV_WARN, "test mode: the update log keeps unsynced "
				  "writes in memory (simulated power loss)");
	}
	if (srv.cfg.shards)
		return run_coordinator(&srv);
	if (load_index(&srv, &idx) != 0)
		return 1;
	if (signalled()) { /* asked to stop while loading: nothing to undo */
		fresh_engine_index_release(idx);
		fresh_demo_free(srv.demo);
		return 0;
	}
	srv.cfg.engine.log = engine_log;
	if (fresh_engine_open(&srv.cfg.engine, idx, &srv.engine, &ferr) !=
	    FRESH_OK) {
		fresh_demo_free(srv.demo);
		return die(ferr.msg);
	}
	if (srv_dispatch_start(srv.engine, srv.cfg.max_batch, srv.cfg.max_queue,
			       &srv.dispatch) != FRESH_OK) {
		fresh_engine_close(srv.engine);
		return die("cannot start the search dispatcher");
	}
	if (srv_http_start(&srv, &http, err, sizeof err) != FRESH_OK) {
		srv_dispatch_stop(srv.dispatch);
		fresh_engine_close(srv.engine);
		fresh_demo_free(srv.demo);
		return die(err);
	}
	progress = srv_progress_start(srv.engine, 5.0);
	srv_log(SRV_INFO, "ready: corrector %s, data dir %s",
		fresh_corrector_kind_name(srv.cfg.engine.kind),
		srv.cfg.engine.data_dir);

	mask_signals(SIG_UNBLOCK);
	sig = wait_for_signal();
	srv_log(SRV_INFO, "signal %d: shutting down", sig);
	srv_http_quiesce(http);
	fresh_engine_stop_refits(srv.engine);
	srv_http_stop(http);
	srv_progress_stop(progress);
	srv_dispatch_stop(srv.dispatch);
	fresh_engine_close(srv.engine);
	fresh_demo_free(srv.demo);
	srv_log(SRV_INFO, "stopped");
	return 0;
}
