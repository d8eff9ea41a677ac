"""The Qdrant-compatible surface (API.md): Qdrant's shapes and envelopes,
answers identical to /v1 (ids and score bits) for every way of asking,
upserts that are durable training updates, errors in Qdrant's envelope
that name the field and change nothing, the same keys (api-key header as
Qdrant's clients send it), and Qdrant's official JavaScript client, pinned
in tests/qdrant_js, driving it end to end."""

import json
import os
import shutil
import subprocess
import tempfile

import numpy as np

from harness import HERE, run
from support import ApiCase, call, index_args, metric_value, save_index

N, D = 3000, 24
JS = os.path.join(HERE, "..", "qdrant_js")


def rand(n, d, seed):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def scored(points):
    return [(p["id"], p["score"]) for p in points]


class Qdrant(ApiCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.X = rand(N, D, 1)
        self.ipath, _ = save_index(self.tmp, self.X)

    def daemon(self, *extra, **kw):
        d = self.start(*index_args(self.ipath), "--corrector", "affine", "--min-pairs", "64",
                       "--refit-every-pairs", "0", "--refit-every-seconds", "0", *extra, **kw)
        return d

    def drift(self, d):
        """A published non-identity corrector, so corrected != stale."""
        A = rand(D, D, 2) * 0.2
        ids = list(range(0, N, 7))
        d.client.update(ids, self.X[ids] @ (np.eye(D, dtype=np.float32) + A).T + 0.1)
        r = d.client.refit(wait=True)
        self.assertTrue(r["accepted"], r)
        return r["version"]

    def q(self, d, method, path, body=None, status=200, **kw):
        r = call(d, method, path, body, **kw)
        self.assertEqual(r.status, status, r)
        obj = r.json()
        if status == 200 and path != "/":
            self.assertEqual(obj["status"], "ok", obj)
            self.assertIsInstance(obj["time"], float)
            self.assertEqual(sorted(obj), ["result", "status", "time"])
            return obj["result"]
        return obj

    def qerror(self, d, method, path, body, status, *needles, **kw):
        """Qdrant's error envelope, a message naming each needle."""
        r = call(d, method, path, body, **kw)
        self.assertEqual(r.status, status, r)
        obj = r.json()
        self.assertEqual(sorted(obj), ["status", "time"], obj)
        msg = obj["status"]["error"]
        for n in needles:
            self.assertIn(n, msg, obj)
        return msg

    def test_root_collections_and_info(self):
        d = self.daemon("--collection", "passages")
        root = self.q(d, "GET", "/")
        self.assertEqual(root["title"], "qdrant - vector search engine")
        self.assertEqual(root["version"], "1.19.0")
        self.assertIn("freshd", root)
        self.assertEqual(self.q(d, "GET", "/collections"), {"collections": [{"name": "passages"}]})
        self.assertEqual(self.q(d, "GET", "/collections/passages/exists"), {"exists": True})
        self.assertEqual(self.q(d, "GET", "/collections/freshd/exists"), {"exists": False})
        info = self.q(d, "GET", "/collections/passages")
        # Every field Qdrant 1.19's CollectionInfo requires.
        for k in ("status", "optimizer_status", "segments_count", "config", "payload_schema"):
            self.assertIn(k, info)
        self.assertEqual(info["points_count"], N)
        self.assertEqual(info["config"]["params"]["vectors"], {"size": D, "distance": "Dot"})
        for k in ("m", "ef_construct", "full_scan_threshold"):
            self.assertIn(k, info["config"]["hnsw_config"])
        for k in ("default_segment_number", "flush_interval_sec"):
            self.assertIn(k, info["config"]["optimizer_config"])
        self.qerror(d, "GET", "/collections/freshd", None, 404,
                    "Collection `freshd` doesn't exist")
        self.qerror(d, "GET", "/collections/passages/points/scroll", None, 404,
                    "/collections/passages/points/scroll")
        r = call(d, "DELETE", "/collections/passages")
        self.assertEqual((r.status, r.header("Allow")), (405, "GET"), r)
        self.qerror(d, "GET", "/collections/passages/points/query", None, 405, "POST")
        self.qerror(d, "POST", "/", {}, 405, "GET")

    def test_query_and_search_equal_v1(self):
        d = self.daemon()
        version = self.drift(d)
        Q = rand(6, D, 3)
        for scoring, using in (("corrected", None), ("stale", "stale")):
            want = d.client.search(Q, k=12, scoring=scoring)
            self.assertEqual(want["corrector_version"], version)
            for i, q in enumerate(Q):
                w = [(h["id"], h["score"]) for h in want["results"][i]]
                body = {"query": q.tolist(), "limit": 12}
                if using:
                    body["using"] = using
                got = self.q(d, "POST", "/collections/freshd/points/query", body)["points"]
                self.assertEqual(scored(got), w)
                self.assertTrue(all(p["version"] == version for p in got))
                self.assertTrue(all(sorted(p) == ["id", "score", "version"] for p in got), got)
                # {"nearest": ...}, offset and score_threshold.
                body2 = dict(body, query={"nearest": q.tolist()}, limit=4, offset=3)
                got = self.q(d, "POST", "/collections/freshd/points/query", body2)["points"]
                self.assertEqual(scored(got), w[3:7])
                thr = w[5][1]
                got = self.q(d, "POST", "/collections/freshd/points/query",
                             dict(body, score_threshold=thr))["points"]
                self.assertEqual(scored(got), [h for h in w if h[1] >= thr])
                # The search API of clients before 1.16 (a bare list).
                vec = {"name": using, "vector": q.tolist()} if using else q.tolist()
                got = self.q(d, "POST", "/collections/freshd/points/search",
                             {"vector": vec, "limit": 12})
                self.assertEqual(scored(got), w)
        # Batches mixing scorings and limits equal the single answers.
        searches = [{"query": Q[i].tolist(), "limit": 2 + i, **({"using": "stale"} if i % 2 else {})}
                    for i in range(len(Q))]
        got = self.q(d, "POST", "/collections/freshd/points/query/batch", {"searches": searches})
        self.assertEqual(len(got), len(Q))
        for i, s in enumerate(searches):
            one = self.q(d, "POST", "/collections/freshd/points/query", s)
            self.assertEqual(got[i], one)
        got = self.q(d, "POST", "/collections/freshd/points/search/batch",
                     {"searches": [{"vector": q.tolist(), "limit": 3} for q in Q]})
        want = d.client.search(Q, k=3)["results"]
        self.assertEqual([scored(g) for g in got], [[(h["id"], h["score"]) for h in w] for w in want])

    def test_vectors_and_query_by_id(self):
        d = self.daemon()
        self.drift(d)
        q = rand(1, D, 4)[0]
        got = self.q(d, "POST", "/collections/freshd/points/query",
                     {"query": q.tolist(), "limit": 5, "with_vector": True, "with_payload": True})
        ids = [p["id"] for p in got["points"]]
        want = d.client.corrected(ids)["vectors"]
        self.assertEqual([p["vector"] for p in got["points"]], want)
        self.assertTrue(all(p["payload"] == {} for p in got["points"]))
        # A point id as the query: that point's corrected vector, itself left out.
        v = d.client.corrected([17])["vectors"][0]
        want = d.client.search([v], k=5, exclude=[[17]])["results"][0]
        got = self.q(d, "POST", "/collections/freshd/points/query", {"query": 17, "limit": 5})
        self.assertEqual(scored(got["points"]), [(h["id"], h["score"]) for h in want])
        self.qerror(d, "POST", "/collections/freshd/points/query", {"query": 10 ** 9}, 404,
                    "1000000000")
        # Retrieve: unknown ids are left out; vectors only when asked for.
        got = self.q(d, "POST", "/collections/freshd/points", {"ids": [5, 10 ** 9, 6]})
        self.assertEqual(got, [{"id": 5}, {"id": 6}])
        got = self.q(d, "POST", "/collections/freshd/points",
                     {"ids": [5, 6], "with_vector": True, "with_payload": True})
        self.assertEqual(got, [{"id": i, "payload": {}, "vector": v}
                               for i, v in zip((5, 6), d.client.corrected([5, 6])["vectors"])])

    def test_upsert_is_a_durable_training_update(self):
        d = self.daemon(keep_dir=True)
        self.addCleanup(shutil.rmtree, d.data_dir, True)
        G = rand(3, D, 5)
        total = d.client.corrector()["pairs"]["total"]
        r = self.q(d, "PUT", "/collections/freshd/points?wait=true",
                   {"points": [{"id": 11, "vector": G[0].tolist()},
                               {"id": 12, "vector": {"": G[1].tolist()}, "payload": None}]})
        self.assertEqual(r["status"], "completed")
        self.assertIsInstance(r["operation_id"], int)
        r = self.q(d, "PUT", "/collections/freshd/points",
                   {"batch": {"ids": [13], "vectors": [G[2].tolist()]}})
        self.assertEqual(r["status"], "acknowledged")
        self.assertEqual(d.client.corrector()["pairs"]["total"], total + 3)
        # Refused, and nothing kept: payloads, unknown or UUID ids, widths.
        bad = [
            ({"points": [{"id": 11, "vector": G[0].tolist(), "payload": {"a": 1}}]}, "points[0].payload"),
            ({"points": [{"id": 11, "vector": G[0].tolist()}, {"id": 10 ** 9, "vector": G[0].tolist()}]},
             "points[1].id", "1000000000"),
            ({"points": [{"id": "5c56c793-69f3-4fbf-87e6-c4bf54c28c26", "vector": G[0].tolist()}]},
             "points[0].id", "UUID"),
            ({"points": [{"id": 11, "vector": G[0].tolist()[:-1]}]}, "points[0].vector"),
            ({"points": [{"id": 11, "vector": {"other": G[0].tolist()}}]}, "points[0].vector"),
            ({"batch": {"ids": [11, 12], "vectors": [G[0].tolist()]}}, "batch.vectors"),
            ({"points": []}, "points"),
            ({"points": [{"id": 11, "vector": G[0].tolist()}], "batch": {}}, "points", "batch"),
            ({"points": [{"id": 11, "vector": G[0].tolist()}], "update_mode": "insert_only"},
             "update_mode"),
            ({"points": [{"id": 11, "vectorz": G[0].tolist()}]}, "vectorz"),
        ]
        for body, *needles in bad:
            with self.subTest(body=json.dumps(body)[:80]):
                self.qerror(d, "PUT", "/collections/freshd/points?wait=true", body, 400, *needles)
        self.assertEqual(d.client.corrector()["pairs"]["total"], total + 3)
        # Acknowledged means durable: after a restart the pairs are there.
        data_dir = d.data_dir
        d.stop()
        d2 = self.daemon(data_dir=data_dir)
        for i, g in zip((11, 12, 13), G):
            t = d2.client.target(i)
            self.assertEqual(np.asarray(t["fresh"], np.float32).tobytes(), g.tobytes())

    def test_new_fresh_width(self):
        """--fresh-dim narrower than the index: points are read in their
        own width, corrected queries need a corrector first."""
        d = self.daemon("--fresh-dim", "8")
        ids = list(range(40))
        got = self.q(d, "POST", "/collections/freshd/points", {"ids": ids, "with_payload": True})
        self.assertEqual([p["id"] for p in got], ids)
        self.qerror(d, "POST", "/collections/freshd/points", {"ids": ids, "with_vector": True},
                    503, "corrector")
        self.qerror(d, "POST", "/collections/freshd/points/query",
                    {"query": [0.5] * 8, "limit": 3}, 503)
        got = self.q(d, "POST", "/collections/freshd/points/query",
                     {"query": rand(1, D, 9)[0].tolist(), "using": "stale", "limit": 3})
        self.assertEqual(len(got["points"]), 3)
        self.assertEqual(self.q(d, "GET", "/collections/freshd")["config"]["params"]["vectors"],
                         {"size": 8, "distance": "Dot"})

    def test_bad_queries_name_the_field(self):
        d = self.daemon()
        q = rand(1, D, 6)[0].tolist()
        path = "/collections/freshd/points/query"
        for body, *needles in [
            ({"query": q[:-1]}, "query", str(D)),
            ({"query": {"nearest": q + [1.0]}}, "query.nearest"),
            ({"query": q, "filter": {"must": []}}, "filter"),
            ({"query": q, "prefetch": {"query": q}}, "prefetch"),
            ({"query": q, "using": "image"}, "using", "image"),
            ({"query": q, "limit": 0}, "limit"),
            ({"query": q, "limit": 900, "offset": 200}, "limit + offset"),
            ({"query": q, "colour": 1}, "colour"),
            ({"query": {"recommend": {"positive": [1]}}}, "query"),
            ({"query": "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"}, "query", "UUID"),
            ({"limit": 3}, "query", "missing"),
        ]:
            with self.subTest(body=json.dumps(body)[:60]):
                self.qerror(d, "POST", path, body, 400, *needles)
        self.qerror(d, "POST", path, "{not json", 400)
        self.qerror(d, "POST", "/collections/freshd/points/query/batch",
                    {"searches": [{"query": q}, {"query": q[:3]}]}, 400, "searches[1].query")
        self.qerror(d, "POST", "/collections/freshd/points", {"ids": [1, "x-y"]}, 400, "ids[1]")

    def test_keys(self):
        key = os.path.join(self.tmp, "key")
        rkey = os.path.join(self.tmp, "rkey")
        with open(key, "w") as f:
            f.write("s3cret-write\n")
        with open(rkey, "w") as f:
            f.write("s3cret-read\n")
        d = self.daemon("--api-key-file", key, "--read-key-file", rkey, api_key="s3cret-write")
        q = rand(1, D, 7)[0].tolist()
        self.q(d, "GET", "/")  # the version check is open, as in Qdrant
        self.qerror(d, "GET", "/collections", None, 401, "api-key")
        self.qerror(d, "GET", "/collections", None, 401, headers={"api-key": "wrong"})
        self.q(d, "GET", "/collections", headers={"api-key": "s3cret-read"})
        self.q(d, "GET", "/collections", key="s3cret-read")
        self.q(d, "POST", "/collections/freshd/points/query", {"query": q},
               headers={"api-key": "s3cret-read"})
        body = {"points": [{"id": 1, "vector": q}]}
        self.qerror(d, "PUT", "/collections/freshd/points", body, 403, "read-only",
                    headers={"api-key": "s3cret-read"})
        self.q(d, "PUT", "/collections/freshd/points", body, headers={"api-key": "s3cret-write"})
        # A wrong Bearer is not rescued by a right api-key header.
        self.qerror(d, "GET", "/collections", None, 401,
                    headers={"api-key": "s3cret-write", "Authorization": "Bearer wrong"})
        # The same api-key header opens /v1 too.
        self.assertEqual(call(d, "GET", "/v1/info", headers={"api-key": "s3cret-read"}).status, 200)

    def test_official_javascript_client(self):
        """Qdrant's own client, 1.19 (query) and 1.18 (search), pinned in
        tests/qdrant_js: every call succeeds or fails as Qdrant's would, and
        the answers are freshd's /v1 answers."""
        if not os.path.isdir(os.path.join(JS, "node_modules")):
            self.fail("the pinned client is not installed: run `npm ci` in tests/qdrant_js "
                      "(.ci/run does)")
        d = self.daemon()
        version = self.drift(d)
        Q = rand(3, D, 8)
        qfile = os.path.join(self.tmp, "queries.json")
        with open(qfile, "w") as f:
            json.dump(Q.tolist(), f)
        out = subprocess.run(["node", os.path.join(JS, "session.mjs"), d.url, "freshd", qfile],
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        report = json.loads(out.stdout)
        want = [[(h["id"], h["score"]) for h in r] for r in d.client.search(Q, k=5)["results"]]
        versions = [r["version"] for r in report["results"]]
        self.assertIn("1.18", versions)
        if int(report["node"].split(".")[0]) >= 20:
            self.assertIn("1.19", versions)
        for r in report["results"]:
            with self.subTest(client=r["version"]):
                self.assertEqual(r["warnings"], [], "the client's version check complained")
                self.assertEqual(r["collections"], {"collections": [{"name": "freshd"}]})
                self.assertEqual((r["exists"], r["exists_other"]),
                                 ({"exists": True}, {"exists": False}))
                self.assertEqual(r["info"]["points_count"], N)
                self.assertEqual(r["missing"]["status"], 404)
                self.assertIn("doesn't exist", r["missing"]["data"]["status"]["error"])
                if "query" in r:
                    self.assertEqual([scored(x["points"]) for x in r["query"]], want)
                    self.assertTrue(all(p["version"] == version
                                        for x in r["query"] for p in x["points"]))
                    self.assertEqual(scored(r["query_nearest"]["points"]), want[0][2:5])
                    self.assertEqual([scored(x["points"]) for x in r["query_batch"]],
                                     [w[:1 + i] for i, w in enumerate(want)])
                    stale = d.client.search(Q[:1], k=5, scoring="stale")["results"][0]
                    self.assertEqual(scored(r["query_stale"]["points"]),
                                     [(h["id"], h["score"]) for h in stale])
                    self.assertEqual(r["query_filter"]["status"], 400)
                if "search" in r:
                    self.assertEqual([scored(x) for x in r["search"]], want)
                self.assertEqual([p["id"] for p in r["retrieve"]], [1, 2])
                self.assertEqual([p["vector"] for p in r["retrieve"]],
                                 d.client.corrected([1, 2])["vectors"])
                self.assertEqual(r["upsert"]["status"], "completed")
                self.assertEqual(r["upsert_batch"]["status"], "completed")
                for k in ("upsert_payload", "upsert_unknown", "upsert_uuid"):
                    self.assertEqual(r[k]["status"], 400, r[k])
        # The upserts reached the pair buffer: 3 per client.
        self.assertEqual(np.asarray(d.client.target(5)["fresh"], np.float32).tobytes(),
                         Q[0].tobytes())
        m = d.client.metrics()
        self.assertGreaterEqual(metric_value(m, "freshd_http_requests_total",
                                             {"endpoint": "qdrant_root", "code": "200"}) or 0,
                                len(versions), "the clients' version check never reached GET /")


if __name__ == "__main__":
    run()
