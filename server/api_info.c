/*
 * api_info.c - GET /v1/info: the index, the corrector, memory, the last
 * index reload, uptime.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "parse.h"
#include "server.h"

/* A field of /proc/meminfo in bytes (0 when absent). */
static long long meminfo_bytes(const char *field)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	size_t len = strlen(field);
	long long kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, field, len) && line[len] == ':') {
			kb = atoll(line + len + 1);
			break;
		}
	fclose(f);
	return kb * 1024;
}

/*
 * What the index and model take, and the largest index this machine could
 * serve by store and corrector kind. Bytes a row (d stale, f fresh):
 * ids and their table 16; f32 rows 4d; bf16 rows 2d and a norm bound 4
 * (the float32 rows stay in the file, in the page cache); an affine
 * corrector adds a norm 4 (folded into the query, no corrected copy); an
 * mlp the corrected matrix, twice while a refit swaps it in: 4f a row
 * with f32, and with bf16 its bf16 copy and norm bound 2f + 4 (its
 * float32 rows go to a file in the data dir, 4f of disk each). The
 * budget is the machine's memory less 1 GiB for everything else.
 */
static json_t *memory_json(struct srv_server *srv,
			   const struct fresh_engine_info *info)
{
	long long total = meminfo_bytes("MemTotal");
	double budget = (double)total - (double)(1LL << 30);
	double d = (double)info->dim, f = (double)info->fresh_dim;
	double row[2] = {16 + 4 * d, 16 + 2 * d + 4};
	const char *kinds[3] = {"none", "affine", "mlp"};
	double add[2][3] = {{0, 4, 8 * f}, {0, 4, 2 * (2 * f + 4)}};
	json_t *largest = json_object();

	(void)srv;
	for (int s = 0; s < 2; s++) {
		json_t *by = json_object();
		for (int k = 0; k < 3; k++) {
			double n =
				budget > 0 ? budget / (row[s] + add[s][k]) : 0;
			json_object_set_new(by, kinds[k],
					    json_integer((json_int_t)n));
		}
		json_object_set_new(largest, s ? "bf16" : "f32", by);
	}
	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "index_bytes",
			 (json_int_t)info->index_bytes, "mapped_bytes",
			 (json_int_t)info->mapped_bytes, "model_bytes",
			 (json_int_t)info->extra_bytes, "staged_bytes",
			 (json_int_t)info->staged_bytes, "resident_bytes",
			 (json_int_t)srv_rss_bytes(), "machine_bytes",
			 (json_int_t)total, "largest_targets", largest);
}

static json_t *reload_json(struct srv_server *srv)
{
	struct fresh_reload_status rs;

	fresh_engine_reload_status(srv->engine, &rs);
	if (rs.state == FRESH_RELOAD_NONE)
		return json_null();
	return json_pack(
		"{s:s,s:s,s:o,s:o,s:o,s:o}", "state",
		fresh_reload_state_name(rs.state), "path", rs.path,
		"started_at", srv_iso_time(rs.started_at), "finished_at",
		rs.finished_at > 0 ? srv_iso_time(rs.finished_at) : json_null(),
		"error", rs.error[0] ? json_string(rs.error) : json_null(),
		"version",
		rs.version ? json_integer((json_int_t)rs.version)
			   : json_null());
}

void srv_api_info(struct srv_request *req, struct srv_reply *r)
{
	struct srv_server *srv = req->srv;
	struct fresh_engine_info info;
	struct fresh_reload_status rs;
	char fp[32];
	json_t *j;

	fresh_engine_info(srv->engine, &info);
	fresh_engine_reload_status(srv->engine, &rs);
	snprintf(fp, sizeof fp, "%016" PRIx64, info.fingerprint);
	j = json_pack(
		"{s:I,s:I,s:I,s:o,s:{s:s,s:o,s:s,s:o},s:s,s:f}", "targets",
		(json_int_t)info.targets, "dim", (json_int_t)info.dim,
		"fresh_dim", (json_int_t)info.fresh_dim, "corrector",
		srv_corrector_json(srv), "index", "source", info.source,
		"loaded_at",
		srv_iso_time(rs.state == FRESH_RELOAD_DONE
				     ? rs.finished_at
				     : srv->index_loaded_at),
		"fingerprint", fp, "reload", reload_json(srv), "version",
		FRESHD_VERSION, "uptime_s", srv_unix_now() - srv->started_at);
	if (j) {
		json_object_set_new(j, "store",
				    json_string(fresh_store_name(info.store)));
		json_object_set_new(j, "memory", memory_json(srv, &info));
		json_object_set_new(j, "shard", json_boolean(srv->cfg.shard));
	}
	srv_reply_json(r, 200, j);
}
