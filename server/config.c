/*
 * config.c - flags and their FRESHD_* environment twins (see config.h).
 *
 * Design: one table lists every flag with its type, destination, range and
 * help line; parsing, the environment and --help all read it, so a flag
 * cannot exist in one and not the others.
 */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

enum kind { BOOL, STR, SIZE, BYTES, U64, I64, DOUBLE, FLOAT, CHOICE, SYNC };

struct flag {
	const char *name;
	enum kind kind;
	void *dst;
	const char *meta, *help;
	double lo, hi;
	const char *const *choices; /* CHOICE: values, index stored as int */
};

static const char *const kinds[] = {"none", "affine", "mlp", NULL};
static const char *const acts[] = {"relu", "gelu", NULL};
static const char *const norms[] = {"auto", "on", "off", NULL};
static const char *const stores[] = {"f32", "bf16", NULL};
static const char *const formats[] = {"logfmt", "json", NULL};
static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

/* Holders for choices, mapped onto the config after parsing. */
struct extra {
	int kind, act, normalize, format, level, store;
	bool help, version;
	unsigned sync_ms;
	int sync;
};

static size_t build(struct flag *f, size_t cap, struct srv_config *c,
		    struct extra *x)
{
	struct fresh_engine_config *e = &c->engine;
	struct fresh_refit_config *r = &e->refit;
	const struct flag all[] = {
		{"demo", BOOL, &c->demo, NULL,
		 "serve a built-in seeded corpus (no files needed)", 0, 0,
		 NULL},
		{"shard", BOOL, &c->shard, NULL,
		 "serve one part of a sharded index under a coordinator: no "
		 "refits of its own (it installs the coordinator's)",
		 0, 0, NULL},
		{"shards", STR, &c->shards, "URL,...",
		 "run as the coordinator over these shard daemons (http://"
		 "HOST:PORT each): the same API over their union",
		 0, 0, NULL},
		{"demo-size", SIZE, &c->demo_size, "N", "demo targets", 1000,
		 1e8, NULL},
		{"demo-dim", SIZE, &c->demo_dim, "D", "demo dimension", 2, 4096,
		 NULL},
		{"seed", U64, &c->seed, "S", "seed of the demo corpus", 0, 0,
		 NULL},
		{"index", STR, &c->index_path, "FILE",
		 "stale embeddings: .npy (float32 N x d), .fvecs or a freshd "
		 "snapshot",
		 0, 0, NULL},
		{"store", CHOICE, &x->store, "STORE",
		 "f32, or bf16: the scan holds half the bytes and rescores "
		 "its "
		 "candidates exactly from the float32 rows left in the index "
		 "file (same answers)",
		 0, 0, stores},
		{"ids", STR, &c->ids_path, "FILE",
		 ".npy of int64/uint64 ids, one a row (default 0..N-1)", 0, 0,
		 NULL},
		{"data-dir", STR, &e->data_dir, "DIR",
		 "update log, pair snapshots and checkpoints", 0, 0, NULL},
		{"collection", STR, &c->collection, "NAME",
		 "the collection's name on the Qdrant-compatible surface", 0, 0,
		 NULL},
		{"listen", STR, &c->listen, "HOST:PORT",
		 "address to serve on (port 0 picks a free one)", 0, 0, NULL},
		{"api-key-file", STR, &c->api_key_file, "FILE",
		 "require 'Authorization: Bearer <key>' on /v1/*", 0, 0, NULL},
		{"read-key-file", STR, &c->read_key_file, "FILE",
		 "a second key that may only read and search", 0, 0, NULL},
		{"insecure", BOOL, &c->insecure, NULL,
		 "allow a non-loopback --listen without a key", 0, 0, NULL},
		{"corrector", CHOICE, &x->kind, "KIND", "mlp, affine or none",
		 0, 0, kinds},
		{"hidden", SIZE, &e->hidden, "H", "mlp hidden width", 1, 16384,
		 NULL},
		{"activation", CHOICE, &x->act, "ACT", "relu or gelu", 0, 0,
		 acts},
		{"fresh-dim", SIZE, &e->fresh_dim, "D",
		 "width of fresh embeddings when it differs from the index's",
		 0, 16384, NULL},
		{"normalize-output", CHOICE, &x->normalize, "MODE",
		 "auto (on when fresh vectors are unit-norm), on or off", 0, 0,
		 norms},
		{"min-pairs", SIZE, &r->min_pairs, "N",
		 "pairs needed before a refit", 2, 1e9, NULL},
		{"max-pairs", SIZE, &e->max_pairs, "N",
		 "pair buffer capacity (oldest arrival evicted)", 1, 4e9, NULL},
		{"refit-every-pairs", SIZE, &e->refit_every_pairs, "M",
		 "refit after M new pairs (0: off)", 0, 1e12, NULL},
		{"refit-every-seconds", DOUBLE, &e->refit_every_seconds, "T",
		 "refit T seconds after the last one when pairs arrived (0: "
		 "off)",
		 0, 1e9, NULL},
		{"max-step-lag", I64, &e->max_step_lag, "L",
		 "at refit, drop pairs whose step is more than L behind the "
		 "newest (0: keep all)",
		 0, 9.2e18, NULL},
		{"refit-epochs", SIZE, &r->max_epochs, "N",
		 "MLP epochs at most", 0, 1e6, NULL},
		{"refit-max-seconds", DOUBLE, &r->max_seconds, "S",
		 "time budget of MLP training in a refit", 0.1, 1e6, NULL},
		{"refit-lr", FLOAT, &r->lr, "LR", "Adam step size of refits",
		 1e-7, 1.0, NULL},
		{"logit-weight", FLOAT, &r->logit_weight, "W",
		 "weight of the logit-matching term over updates' queries "
		 "(0: off)",
		 0, 1e6, NULL},
		{"serve-fresh-rows", BOOL, &r->serve_fresh_rows, NULL,
		 "score a target with a fresh row by that row, not h(s): each "
		 "refit's pairs go into its corrector and checkpoint (mlp)",
		 0, 0, NULL},
		{"age-fresh-rows", BOOL, &r->age_fresh_rows, NULL,
		 "with --serve-fresh-rows: each publish fits an affine map "
		 "from served rows to the rows that replaced them and moves "
		 "the other rows by it",
		 0, 0, NULL},
		{"logit-temperature", FLOAT, &r->logit_temperature, "T",
		 "softmax temperature of the logit term", 1e-4, 100, NULL},
		{"max-update-queries", SIZE, &e->max_queries, "N",
		 "update queries kept for the logit term", 0, 1e9, NULL},
		{"sync", SYNC, x, "POLICY",
		 "always (fsync before acknowledging) or interval=MS", 0, 0,
		 NULL},
		{"salvage-log", BOOL, &e->salvage_log, NULL,
		 "on a corrupt record mid-log, keep the records before it and "
		 "start",
		 0, 0, NULL},
		{"keep-checkpoints", SIZE, &e->keep_checkpoints, "N",
		 "published correctors kept on disk", 1, 1000, NULL},
		{"threads", SIZE, &e->search_threads, "N",
		 "search threads (default: one per CPU)", 0, 1024, NULL},
		{"max-body", BYTES, &c->max_body, "BYTES",
		 "largest request body (K, M, G suffixes)", 1024, 1e12, NULL},
		{"max-queries", SIZE, &c->max_queries, "N",
		 "queries (or ids) in one request", 1, 1e6, NULL},
		{"max-batch", SIZE, &c->max_batch, "N",
		 "queries scored together in one pass", 1, 1e6, NULL},
		{"max-queue", SIZE, &c->max_queue, "N",
		 "queries waiting before 503 overloaded", 1, 1e9, NULL},
		{"max-connections", SIZE, &c->max_connections, "N",
		 "open connections at once", 1, 1e6, NULL},
		{"max-connections-per-ip", SIZE, &c->max_per_ip, "N",
		 "open connections from one address", 1, 1e6, NULL},
		{"connection-timeout", SIZE, &c->connection_timeout, "SECONDS",
		 "idle or slow connections are closed after this", 1, 86400,
		 NULL},
		{"max-header-bytes", BYTES, &c->max_header, "BYTES",
		 "request header memory (431 beyond)", 4096, 1 << 24, NULL},
		{"log-format", CHOICE, &x->format, "FORMAT", "logfmt or json",
		 0, 0, formats},
		{"log-level", CHOICE, &x->level, "LEVEL",
		 "debug, info, warn or error", 0, 0, levels},
		{"help", BOOL, &x->help, NULL, "print this help", 0, 0, NULL},
		{"version", BOOL, &x->version, NULL, "print the version", 0, 0,
		 NULL},
	};
	size_t n = sizeof all / sizeof *all;

	assert(n <= cap);
	memcpy(f, all, sizeof all);
	return n;
}

static bool fail(char *err, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static bool fail(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, cap, fmt, ap);
	va_end(ap);
	return false;
}

static bool parse_bytes(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || v < 0)
		return false;
	switch (toupper((unsigned char)*end)) {
	case 'K':
		v *= 1024.0;
		end++;
		break;
	case 'M':
		v *= 1048576.0;
		end++;
		break;
	case 'G':
		v *= 1073741824.0;
		end++;
		break;
	default:
		break;
	}
	if (toupper((unsigned char)*end) == 'I')
		end++;
	if (toupper((unsigned char)*end) == 'B')
		end++;
	*out = v;
	return *end == '\0';
}

/* Applies one value to one flag. from names the source for errors. */
static bool set(const struct flag *f, const char *v, const char *from,
		char *err, size_t cap)
{
	char *end;
	double d;

	switch (f->kind) {
	case BOOL:
		if (!v || !strcmp(v, "1") || !strcmp(v, "true") ||
		    !strcmp(v, "yes"))
			*(bool *)f->dst = true;
		else if (!strcmp(v, "0") || !strcmp(v, "false") ||
			 !strcmp(v, "no"))
			*(bool *)f->dst = false;
		else
			return fail(err, cap,
				    "%s: expected true or false, got "
				    "'%s'",
				    from, v);
		return true;
	case STR:
		*(const char **)f->dst = v;
		return true;
	case CHOICE:
		for (int i = 0; f->choices[i]; i++)
			if (!strcmp(v, f->choices[i])) {
				*(int *)f->dst = i;
				return true;
			}
		return fail(err, cap, "%s: unknown value '%s'", from, v);
	case SYNC:
		if (!strcmp(v, "always")) {
			((struct extra *)f->dst)->sync = FRESH_SYNC_ALWAYS;
			return true;
		}
		if (!strncmp(v, "interval=", 9)) {
			unsigned long ms = strtoul(v + 9, &end, 10);
			if (end != v + 9 && !*end && ms >= 1 && ms <= 3600000) {
				((struct extra *)f->dst)->sync =
					FRESH_SYNC_INTERVAL;
				((struct extra *)f->dst)->sync_ms =
					(unsigned)ms;
				return true;
			}
		}
		return fail(
			err, cap,
			"%s: expected 'always' or 'interval=MS' (1..3600000), "
			"got '%s'",
			from, v);
	case BYTES:
		if (!parse_bytes(v, &d))
			return fail(err, cap,
				    "%s: expected a size like 64M, "
				    "got '%s'",
				    from, v);
		break;
	default:
		errno = 0;
		d = strtod(v, &end);
		if (end == v || *end || errno == ERANGE)
			return fail(err, cap, "%s: expected a number, got '%s'",
				    from, v);
		if (f->kind != DOUBLE && f->kind != FLOAT &&
		    d != (double)(long long)d)
			return fail(err, cap,
				    "%s: expected an integer, got '%s'", from,
				    v);
		break;
	}
	if ((f->lo != 0 || f->hi != 0) && (d < f->lo || d > f->hi))
		return fail(err, cap, "%s: %s is out of range %g..%g", from, v,
			    f->lo, f->hi);
	if (d < 0 && f->kind != DOUBLE && f->kind != FLOAT && f->kind != I64)
		return fail(err, cap, "%s: %s must not be negative", from, v);
	switch (f->kind) {
	case SIZE:
	case BYTES:
		*(size_t *)f->dst = (size_t)d;
		break;
	case U64:
		*(uint64_t *)f->dst = strtoull(v, NULL, 10);
		break;
	case I64:
		*(int64_t *)f->dst = strtoll(v, NULL, 10);
		break;
	case DOUBLE:
		*(double *)f->dst = d;
		break;
	case FLOAT:
		*(float *)f->dst = (float)d;
		break;
	default:
		break;
	}
	return true;
}

static void usage(const struct flag *f, size_t n)
{
	printf("freshd %s - a retrieval server that corrects a stale index\n\n"
	       "usage: freshd --demo [flags]\n"
	       "       freshd --index FILE [--ids FILE] [flags]\n\n"
	       "Every flag can also be set by an environment variable: "
	       "--data-dir as\nFRESHD_DATA_DIR, and so on; flags win.\n\n",
	       FRESHD_VERSION);
	for (size_t i = 0; i < n; i++) {
		char left[64];
		snprintf(left, sizeof left, "--%s%s%s", f[i].name,
			 f[i].meta ? " " : "", f[i].meta ? f[i].meta : "");
		printf("  %-34s %s\n", left, f[i].help);
	}
}

static void defaults(struct srv_config *c, struct extra *x)
{
	memset(c, 0, sizeof *c);
	c->engine = fresh_engine_config_default();
	c->demo_size = 100000;
	c->demo_dim = 128;
	c->seed = 42;
	c->listen = "127.0.0.1:8080";
	c->collection = "freshd";
	c->max_body = (size_t)64 << 20;
	c->max_queries = 4096;
	c->max_batch = 256;
	c->max_queue = 16384;
	c->max_connections = 512;
	c->max_per_ip = 256;
	c->connection_timeout = 60;
	c->max_header = 64 << 10;
	c->log_level = SRV_INFO;
	memset(x, 0, sizeof *x);
	x->kind = 2; /* mlp */
	x->level = SRV_INFO;
	x->sync = FRESH_SYNC_ALWAYS;
	x->sync_ms = 100;
}

enum srv_parse_result srv_config_parse(int argc, char **argv,
				       struct srv_config *cfg, char *err,
				       size_t cap)
{
	struct flag flags[64];
	struct extra x;
	size_t n;

	defaults(cfg, &x);
	n = build(flags, sizeof flags / sizeof *flags, cfg, &x);
	/* Environment first, so that flags override it. */
	for (size_t i = 0; i < n; i++) {
		char env[64], from[80];
		const char *v;
		size_t k = snprintf(env, sizeof env, "FRESHD_");
		for (const char *p = flags[i].name; *p && k + 1 < sizeof env;
		     p++)
			env[k++] = *p == '-' ? '_'
					     : (char)toupper((unsigned char)*p);
		env[k] = '\0';
		v = getenv(env);
		if (!v || !strcmp(flags[i].name, "help") ||
		    !strcmp(flags[i].name, "version"))
			continue;
		snprintf(from, sizeof from, "%s", env);
		if (!set(&flags[i], v, from, err, cap))
			return SRV_CONFIG_ERROR;
	}
	for (int a = 1; a < argc; a++) {
		const char *arg = argv[a], *eq, *v = NULL;
		const struct flag *f = NULL;
		char from[96];
		size_t len;

		if (strncmp(arg, "--", 2) != 0) {
			fail(err, cap, "unexpected argument '%s' (see --help)",
			     arg);
			return SRV_CONFIG_ERROR;
		}
		eq = strchr(arg, '=');
		len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
		for (size_t i = 0; i < n && !f; i++)
			if (strlen(flags[i].name) == len &&
			    !strncmp(arg + 2, flags[i].name, len))
				f = &flags[i];
		if (!f) {
			fail(err, cap, "unknown flag '%.*s' (see --help)",
			     (int)(len + 2), arg);
			return SRV_CONFIG_ERROR;
		}
		snprintf(from, sizeof from, "--%s", f->name);
		if (eq)
			v = eq + 1;
		else if (f->kind != BOOL) {
			if (a + 1 >= argc) {
				fail(err, cap, "--%s needs a value (%s)",
				     f->name, f->meta);
				return SRV_CONFIG_ERROR;
			}
			v = argv[++a];
		}
		if (!set(f, v, from, err, cap))
			return SRV_CONFIG_ERROR;
	}
	if (x.help) {
		usage(flags, n);
		return SRV_CONFIG_EXIT;
	}
	if (x.version) {
		printf("freshd %s\n", FRESHD_VERSION);
		return SRV_CONFIG_EXIT;
	}
	cfg->engine.kind = (enum fresh_corrector_kind)x.kind;
	cfg->engine.store = (enum fresh_store)x.store;
	cfg->engine.act = (enum fresh_activation)x.act;
	cfg->engine.refit.normalize = (enum fresh_normalize_mode)x.normalize;
	cfg->engine.sync = (enum fresh_sync)x.sync;
	cfg->engine.sync_interval_ms = x.sync_ms;
	cfg->log_json = x.format == 1;
	cfg->log_level = x.level;
	if (cfg->shards) {
		if (cfg->demo || cfg->index_path || cfg->shard) {
			fail(err, cap,
			     "--shards runs a coordinator: it takes "
			     "no --index, --demo or --shard");
			return SRV_CONFIG_ERROR;
		}
	} else if (cfg->demo == (cfg->index_path != NULL)) {
		fail(err, cap,
		     cfg->demo ? "give --demo or --index, not both"
			       : "give --index FILE or --demo "
				 "(see --help)");
		return SRV_CONFIG_ERROR;
	}
	if (cfg->ids_path && !cfg->index_path) {
		fail(err, cap, "--ids needs --index");
		return SRV_CONFIG_ERROR;
	}
	if (cfg->read_key_file && !cfg->api_key_file) {
		fail(err, cap, "--read-key-file needs --api-key-file");
		return SRV_CONFIG_ERROR;
	}
	if (!cfg->collection[0] || strlen(cfg->collection) > 255 ||
	    strchr(cfg->collection, '/')) {
		fail(err, cap, "--collection: 1 to 255 characters, no '/'");
		return SRV_CONFIG_ERROR;
	}
	if (cfg->engine.refit.serve_fresh_rows &&
	    (cfg->shard ||
	     (!cfg->shards && cfg->engine.kind != FRESH_CORRECTOR_MLP))) {
		fail(err, cap,
		     cfg->shard ? "--serve-fresh-rows is the coordinator's "
				  "flag: a shard serves what it installs"
				: "--serve-fresh-rows needs --corrector mlp "
				  "(only a materialized h(S) can hold rows)");
		return SRV_CONFIG_ERROR;
	}
	if (cfg->engine.refit.age_fresh_rows &&
	    (!cfg->engine.refit.serve_fresh_rows || cfg->shards)) {
		fail(err, cap,
		     cfg->shards ? "--age-fresh-rows: not with --shards (the "
				   "coordinator keeps no record of the rows "
				   "the shards serve)"
				 : "--age-fresh-rows needs --serve-fresh-rows");
		return SRV_CONFIG_ERROR;
	}
	if (cfg->shard) {
		/* The coordinator refits; a shard only installs. */
		cfg->engine.refit_every_pairs = 0;
		cfg->engine.refit_every_seconds = 0;
	}
	if (cfg->max_batch > cfg->max_queue)
		cfg->max_queue = cfg->max_batch;
	return SRV_CONFIG_OK;
}

bool srv_read_key(const char *path, char *key, size_t cap, char *err,
		  size_t ecap)
{
	FILE *f = fopen(path, "r");
	size_t n, s = 0;

	if (!f)
		return fail(err, ecap, "%s: %s", path, strerror(errno));
	if (!fgets(key, (int)cap, f))
		key[0] = '\0';
	fclose(f);
	n = strcspn(key, "\r\n");
	key[n] = '\0';
	while (n > 0 && isspace((unsigned char)key[n - 1]))
		key[--n] = '\0';
	while (isspace((unsigned char)key[s]))
		s++;
	memmove(key, key + s, n - s + 1);
	if (!key[0])
		return fail(err, ecap, "%s: the key is empty", path);
	return true;
}
