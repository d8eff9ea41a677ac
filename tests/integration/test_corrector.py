"""Training updates and the corrector's life: /v1/updates and its step rules,
/v1/refit with and without wait, GET /v1/corrector, reset, checkpoints
shared between two daemons, DELETE /v1/pairs, and a restart on the same
data dir."""

import shutil
import tempfile

import numpy as np

from harness import run
from support import (ApiCase, b64, brute_topk, call, hits, index_args, int_matrix,
                     metric_value, save_index, sparse_ids, wait_until)

N, D = 1500, 16
HOLDOUT_KEYS = {"stale_mse", "corrected_mse", "stale_rel_err", "corrected_rel_err"}


def fresh_of(X, seed=99, scale=0.3):
    """The 'new encoder': a fixed linear map of the stale vectors."""
    rng = np.random.default_rng(seed)
    M = np.eye(X.shape[1], dtype=np.float32) + scale * rng.standard_normal(
        (X.shape[1], X.shape[1])).astype(np.float32)
    return (X @ M).astype(np.float32)


def f32(values):
    """JSON numbers as float32 values (the server prints float32 exactly,
    in the shortest form that reads back as the same float32)."""
    return np.array(values, dtype=np.float32).tolist()


class CorrectorCase(ApiCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.X = int_matrix(N, D, seed=31)
        self.ids = sparse_ids(N, seed=32)
        self.F = fresh_of(self.X)
        self.ipath, self.jpath = save_index(self.tmp, self.X, self.ids)
        self.row = {int(i): r for r, i in enumerate(self.ids)}

    def args(self, *extra):
        return index_args(self.ipath, self.jpath, "--hidden", "16", *extra)

    def post_fresh(self, c, rows, step=None):
        return c.update([int(self.ids[r]) for r in rows], self.F[rows], step=step)


class Updates(CorrectorCase):
    def test_update_ack_and_counts(self):
        d = self.start(*self.args())
        c = d.client
        r = call(d, "POST", "/v1/updates", {"targets": [
            {"id": int(self.ids[0]), "vector": self.F[0].tolist()},
            {"id": int(self.ids[1]), "vector_b64": b64(self.F[1])}]})
        self.assertEqual(r.status, 202, r)
        ack = r.json()
        self.assertTrue({"accepted", "seq", "buffered"} <= set(ack), ack)
        self.assertEqual(ack["accepted"], 2)
        self.assertEqual(ack["buffered"], 2)
        seq1 = ack["seq"]
        self.assertIsInstance(seq1, int)
        # The same two targets again plus a new one: the buffer holds one
        # pair per target, accepted counts every pair of the request.
        ack = self.post_fresh(c, [0, 1, 2])
        self.assertEqual(ack["accepted"], 3)
        self.assertEqual(ack["buffered"], 3)
        self.assertGreater(ack["seq"], seq1)
        corr = c.corrector()
        self.assertEqual(corr["pairs"], {"buffered": 3, "total": 5})
        text = c.metrics()
        self.assertEqual(metric_value(text, "freshd_pairs_buffered"), 3.0)
        t = c.target(int(self.ids[1]))
        self.assertEqual(f32(t["fresh"]), self.F[1].tolist())
        self.assertIsNone(t["fresh_step"])

    def test_queries_with_positive_among_targets(self):
        d = self.start(*self.args())
        q = np.ones(D, dtype=np.float32)
        tid = int(self.ids[4])
        body = {"targets": [{"id": tid, "vector": self.F[4].tolist()},
                            {"id": int(self.ids[5]), "vector": self.F[5].tolist()}],
                "queries": [{"vector": q.tolist(), "positive": tid},
                            {"vector_b64": b64(q), "positive": int(self.ids[5])}],
                "step": 3}
        r = call(d, "POST", "/v1/updates", body)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["accepted"], 2)
        self.assertEqual(d.client.target(tid)["fresh_step"], 3)

    def test_step_order(self):
        d = self.start(*self.args())
        c = d.client
        tid = int(self.ids[10])
        v = [self.F[10] + k for k in range(5)]

        def state():
            t = c.target(tid)
            return f32(t["fresh"]), t["fresh_step"]

        c.update([tid], [v[0]], step=10)
        self.assertEqual(state(), (v[0].tolist(), 10))
        ack = c.update([tid], [v[1]], step=5)       # older: ignored (but logged)
        self.assertEqual(ack["accepted"], 1)
        self.assertEqual(ack["buffered"], 1)
        self.assertEqual(state(), (v[0].tolist(), 10))
        c.update([tid], [v[2]], step=20)            # newer: replaces
        self.assertEqual(state(), (v[2].tolist(), 20))
        c.update([tid], [v[3]], step=20)            # tie: later arrival wins
        self.assertEqual(state(), (v[3].tolist(), 20))
        self.assertEqual(c.corrector()["pairs"], {"buffered": 1, "total": 4})
        # Within one request the newer step wins too.
        tid2 = int(self.ids[11])
        c.update([tid2], [v[4]], step=100)
        c.update([tid2], [v[0]], step=99)
        self.assertEqual(f32(c.target(tid2)["fresh"]), v[4].tolist())
        self.assertEqual(c.target(tid2)["fresh_step"], 100)


class Refit(CorrectorCase):
    def test_refit_wait_publishes_a_better_corrector(self):
        d = self.start(*self.args())
        c = d.client
        corr = c.corrector()
        self.assertEqual(corr["version"], 0)
        self.assertEqual(corr["kind"], "mlp")
        self.assertEqual(corr["hidden"], 16)
        self.assertEqual(corr["state"], "idle")
        self.assertIsNone(corr["holdout"])
        self.assertEqual(corr["pairs"], {"buffered": 0, "total": 0})
        rows = list(range(0, N, 4))
        self.post_fresh(c, rows[:200])
        ack = self.post_fresh(c, rows[200:])
        out = c.refit(wait=True)
        self.assertIs(out["accepted"], True, out)
        self.assertEqual(out["version"], 1)
        self.assertEqual(out["trained_through_seq"], ack["seq"])
        self.assertTrue(HOLDOUT_KEYS <= set(out["holdout"]), out["holdout"])
        h = out["holdout"]
        self.assertLess(h["corrected_mse"], 0.05 * h["stale_mse"])
        self.assertLess(h["corrected_rel_err"], h["stale_rel_err"])
        self.assertIn("duration_ms", out)
        corr = c.corrector()
        self.assertEqual(corr["version"], 1)
        self.assertEqual(corr["state"], "idle")
        self.assertEqual({k: corr["holdout"][k] for k in HOLDOUT_KEYS},
                         {k: h[k] for k in HOLDOUT_KEYS})
        self.assertEqual(corr["pairs"]["buffered"], len(rows))
        # Refits read the buffer, they do not consume it.
        self.assertEqual(c.info()["corrector"]["pairs"]["buffered"], len(rows))
        self.assertEqual(metric_value(c.metrics(), "freshd_corrector_version"), 1.0)
        # The corrected vectors now approximate the fresh ones, including
        # targets with no pair; stale ones are untouched.
        t = c.target(int(self.ids[1]))
        np.testing.assert_allclose(t["corrected"], self.F[1], atol=0.05, rtol=0.01)
        self.assertEqual(t["stale"], self.X[1].tolist())
        # Search: stale scoring still matches the stale index exactly;
        # corrected scoring is <q, h(s)> for the corrected vectors.
        q = np.array([1, -2, 0, 3, 1, 1, -1, 2, 0, 0, 1, -3, 2, 1, 0, 1], dtype=np.float32)
        st = c.search(q, k=10, scoring="stale")
        self.assertEqual(st["corrector_version"], 1)
        self.assertEqual(hits(st["results"][0]), brute_topk(self.X, self.ids, q, 10))
        co = c.search(q, k=10)
        self.assertEqual(co["corrector_version"], 1)
        cv = np.array(c.corrected([int(i) for i in self.ids])["vectors"], dtype=np.float64)
        exact = cv @ q.astype(np.float64)
        order = np.argsort(-exact, kind="stable")
        got = co["results"][0]
        for h_ in got:
            self.assertAlmostEqual(h_["score"], exact[self.row[h_["id"]]], delta=1e-3)
        self.assertAlmostEqual(got[0]["score"], exact[order[0]], delta=1e-3)
        self.assertAlmostEqual(got[-1]["score"], exact[order[9]], delta=1e-3)
        self.assertEqual([x["score"] for x in got], sorted((x["score"] for x in got), reverse=True))
        self.assertNotEqual(hits(co["results"][0]), hits(st["results"][0]))

    def test_refit_without_wait(self):
        d = self.start(*self.args())
        c = d.client
        self.post_fresh(c, list(range(300)))
        r = call(d, "POST", "/v1/refit")
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json().get("state"), "training")
        corr = wait_until(lambda: (lambda x: x if x["version"] == 1 and x["state"] == "idle" else None)(c.corrector()))
        self.assertTrue(corr, "the refit did not publish version 1")
        self.assertIs(corr["last_refit"]["accepted"], True)
        self.assertTrue(HOLDOUT_KEYS <= set(corr["holdout"]))

    def test_refit_with_too_few_pairs(self):
        d = self.start(*self.args("--min-pairs", "64"))
        c = d.client
        self.post_fresh(c, list(range(20)))
        r = call(d, "POST", "/v1/refit?wait=true")
        self.assertEqual(r.status, 200, r)
        out = r.json()
        self.assertIs(out["accepted"], False)
        self.assertIsInstance(out["reason"], str)
        self.assertTrue(out["reason"])
        corr = c.corrector()
        self.assertEqual(corr["version"], 0)
        self.assertIsNone(corr["holdout"])
        # Without wait: 202, and the same outcome in last_refit.
        r = call(d, "POST", "/v1/refit")
        self.assertEqual(r.status, 202, r)
        corr = wait_until(lambda: (lambda x: x if x["state"] == "idle" and x["last_refit"] else None)(c.corrector()))
        self.assertIs(corr["last_refit"]["accepted"], False)
        self.assertTrue(corr["last_refit"]["reason"])
        self.assertEqual(corr["version"], 0)
        self.assertIsNone(corr["holdout"])

    def test_refit_that_does_not_beat_is_not_published(self):
        # Fresh == stale: the identity is already perfect, nothing beats it.
        d = self.start(*self.args())
        c = d.client
        c.update([int(i) for i in self.ids[:300]], self.X[:300])
        out = c.refit(wait=True)
        self.assertIs(out["accepted"], False, out)
        self.assertIsInstance(out["reason"], str)
        self.assertTrue(out["reason"])
        corr = c.corrector()
        self.assertEqual(corr["version"], 0)
        self.assertIsNone(corr["holdout"])
        self.assertIs(corr["last_refit"]["accepted"], False)
        self.assertEqual(corr["last_refit"]["reason"], out["reason"])
        text = c.metrics()
        self.assertEqual(metric_value(text, "freshd_refits_total", {"result": "rejected"}), 1.0)
        self.assertEqual(metric_value(text, "freshd_refits_total", {"result": "accepted"}), 0.0)
        self.assertEqual(metric_value(text, "freshd_corrector_version"), 0.0)

    def test_metrics_follow_the_corrector(self):
        d = self.start(*self.args())
        c = d.client
        self.post_fresh(c, list(range(250)))
        self.assertTrue(c.refit(wait=True)["accepted"])
        c.reset()
        text = c.metrics()
        self.assertEqual(metric_value(text, "freshd_corrector_version"), 2.0)
        self.assertEqual(metric_value(text, "freshd_pairs_buffered"), 250.0)
        self.assertEqual(metric_value(text, "freshd_refits_total", {"result": "accepted"}), 1.0)
        self.assertGreaterEqual(metric_value(text, "freshd_http_requests_total",
                                             {"endpoint": "updates", "code": "202"}), 1.0)

    def test_reset_restores_identity(self):
        d = self.start(*self.args())
        c = d.client
        self.post_fresh(c, list(range(400)))
        self.assertTrue(c.refit(wait=True)["accepted"])
        Q = int_matrix(4, D, seed=5)
        self.assertNotEqual(c.search(Q, k=10)["results"], c.search(Q, k=10, scoring="stale")["results"])
        r = call(d, "POST", "/v1/corrector/reset")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json().get("version"), 2)
        corr = c.corrector()
        self.assertEqual(corr["version"], 2)
        self.assertEqual(corr["pairs"]["buffered"], 400)     # reset leaves the pairs
        co = c.search(Q, k=10)
        self.assertEqual(co["corrector_version"], 2)
        self.assertEqual(co["results"], c.search(Q, k=10, scoring="stale")["results"])
        for i, q in enumerate(Q):
            self.assertEqual(hits(co["results"][i]), brute_topk(self.X, self.ids, q, 10))
        t = c.target(int(self.ids[3]))
        self.assertEqual(t["corrected"], t["stale"])


class Checkpoints(CorrectorCase):
    def test_checkpoint_moves_a_corrector_between_daemons(self):
        a = self.start(*self.args())
        b = self.start(*self.args())
        self.post_fresh(a.client, list(range(0, N, 3)))
        out = a.client.refit(wait=True)
        self.assertTrue(out["accepted"], out)
        r = call(a, "GET", "/v1/corrector/checkpoint")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("Content-Type", "").startswith("application/octet-stream"))
        ckpt1 = r.data
        self.assertGreater(len(ckpt1), 0)
        r = call(b, "PUT", "/v1/corrector/checkpoint", ckpt1,
                 headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(b.client.corrector()["version"], 1)
        Q = np.random.default_rng(3).standard_normal((6, D)).astype(np.float32)
        ra, rb = a.client.search(Q, k=25), b.client.search(Q, k=25)
        self.assertEqual(ra, rb)
        self.assertEqual(rb["corrector_version"], 1)
        some = [int(i) for i in self.ids[:50]]
        self.assertEqual(a.client.corrected(some), b.client.corrected(some))
        # Damaged bytes: 400, nothing installed.
        bad = bytearray(ckpt1)
        bad[len(bad) // 2] ^= 0x55
        for junk in (bytes(bad), ckpt1[:len(ckpt1) // 2], b"not a checkpoint", b""):
            r = call(b, "PUT", "/v1/corrector/checkpoint", junk,
                     headers={"Content-Type": "application/octet-stream"})
            self.assertError(r, 400, "invalid_argument")
        self.assertEqual(b.client.corrector()["version"], 1)
        self.assertEqual(b.client.search(Q, k=25), ra)
        # B moves on (reset: version 2); A's version-1 checkpoint is older.
        b.client.reset()
        r = call(b, "PUT", "/v1/corrector/checkpoint", ckpt1,
                 headers={"Content-Type": "application/octet-stream"})
        self.assertError(r, 409, "conflict")
        corr = b.client.corrector()
        self.assertEqual(corr["version"], 2)
        self.assertEqual(b.client.search(Q, k=25, scoring="corrected")["results"],
                         b.client.search(Q, k=25, scoring="stale")["results"])
        r = call(b, "PUT", "/v1/corrector/checkpoint?force=true", ckpt1,
                 headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(b.client.corrector()["version"], 1)
        self.assertEqual(b.client.search(Q, k=25), ra)
        # B now holds exactly A's corrector.
        self.assertEqual(call(b, "GET", "/v1/corrector/checkpoint").data, ckpt1)

    def test_checkpoint_staged_then_committed(self):
        """The two phases a coordinator uses: a staged checkpoint is built
        but not served until its version is committed; a commit of another
        version, or with none staged, is 404 and changes nothing."""
        a = self.start(*self.args())
        b = self.start(*self.args())
        self.post_fresh(a.client, list(range(0, N, 3)))
        self.assertTrue(a.client.refit(wait=True)["accepted"])
        ckpt = a.client.checkpoint()
        Q = np.random.default_rng(4).standard_normal((5, D)).astype(np.float32)
        before = b.client.search(Q, k=20)
        octet = {"Content-Type": "application/octet-stream"}
        self.assertEqual(b.client.info()["memory"]["staged_bytes"], 0)
        r = call(b, "PUT", "/v1/corrector/checkpoint?stage=true", ckpt, headers=octet)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"version": 1, "staged": True})
        self.assertEqual(b.client.corrector()["version"], 0)
        # Its h(S), built and held beside the one served.
        self.assertEqual(b.client.info()["memory"]["staged_bytes"], N * D * 4)
        self.assertEqual(b.client.search(Q, k=20), before)
        self.assertError(call(b, "POST", "/v1/corrector/checkpoint/commit?version=2"),
                         404, "not_found", "version 1", "not 2")
        for bad in ("", "?version=", "?version=-1", "?version=1x", "?version=99999999999999999999999"):
            self.assertError(call(b, "POST", "/v1/corrector/checkpoint/commit" + bad),
                             400, "invalid_argument", "version")
        self.assertEqual(b.client.corrector()["version"], 0)
        r = call(b, "POST", "/v1/corrector/checkpoint/commit?version=1")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"version": 1})
        self.assertEqual(b.client.corrector()["version"], 1)
        self.assertEqual(b.client.info()["memory"]["staged_bytes"], 0)
        self.assertEqual(b.client.search(Q, k=20), a.client.search(Q, k=20))
        self.assertError(call(b, "POST", "/v1/corrector/checkpoint/commit?version=1"),
                         404, "not_found", "no checkpoint is staged")
        # Staged, then a newer version published: the commit is refused.
        r = call(b, "PUT", "/v1/corrector/checkpoint?stage=true&force=true", ckpt, headers=octet)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(call(b, "DELETE", "/v1/corrector/checkpoint/staged").json(),
                         {"dropped": True})
        self.assertEqual(call(b, "DELETE", "/v1/corrector/checkpoint/staged").json(),
                         {"dropped": False})
        r = call(b, "PUT", "/v1/corrector/checkpoint?stage=true", ckpt, headers=octet)
        self.assertEqual(r.status, 200, r)
        b.client.reset()  # version 2
        self.assertError(call(b, "POST", "/v1/corrector/checkpoint/commit?version=1"),
                         409, "conflict", "older than the current 2")
        self.assertEqual(b.client.corrector()["version"], 2)
        # What put refuses, stage refuses: damaged bytes, an older version.
        self.assertError(call(b, "PUT", "/v1/corrector/checkpoint?stage=true", b"junk",
                              headers=octet), 400, "invalid_argument")
        self.assertError(call(b, "PUT", "/v1/corrector/checkpoint?stage=true", ckpt,
                              headers=octet), 409, "conflict", "older")

    def test_checkpoint_of_another_shape_is_409_even_forced(self):
        a = self.start(*self.args())
        other = self.start(*index_args(self.ipath, self.jpath, "--hidden", "8"))
        aff = self.start(*index_args(self.ipath, self.jpath, "--corrector", "affine"))
        self.post_fresh(a.client, list(range(300)))
        self.assertTrue(a.client.refit(wait=True)["accepted"])
        ckpt = a.client.checkpoint()
        for d in (other, aff):
            for path in ("/v1/corrector/checkpoint", "/v1/corrector/checkpoint?force=true"):
                r = call(d, "PUT", path, ckpt, headers={"Content-Type": "application/octet-stream"})
                self.assertError(r, 409, "conflict")
            self.assertEqual(d.client.corrector()["version"], 0)


class Persistence(CorrectorCase):
    def test_clear_pairs(self):
        d = self.start(*self.args())
        c = d.client
        self.post_fresh(c, list(range(100)), step=4)
        self.assertEqual(c.corrector()["pairs"], {"buffered": 100, "total": 100})
        r = call(d, "DELETE", "/v1/pairs")
        self.assertEqual(r.status, 200, r)
        corr = c.corrector()
        self.assertEqual(corr["pairs"]["buffered"], 0)
        self.assertEqual(corr["pairs"]["total"], 100)
        t = c.target(int(self.ids[7]))
        self.assertIsNone(t["fresh"])
        self.assertIsNone(t["fresh_step"])
        out = c.refit(wait=True)
        self.assertIs(out["accepted"], False)
        self.assertEqual(metric_value(c.metrics(), "freshd_pairs_buffered"), 0.0)
        # Durable: still empty after a restart.
        d.stop()
        d2 = self.start(*self.args(), data_dir=d.data_dir)
        corr = d2.client.corrector()
        self.assertEqual(corr["pairs"]["buffered"], 0)
        self.assertEqual(corr["pairs"]["total"], 100)
        self.assertIsNone(d2.client.target(int(self.ids[7]))["fresh"])

    def test_restart_keeps_version_and_pairs(self):
        d = self.start(*self.args(), keep_dir=True)
        self.addCleanup(shutil.rmtree, d.data_dir, True)
        c = d.client
        self.post_fresh(c, list(range(0, 600)), step=7)
        tid = int(self.ids[650])
        c.update([tid], [self.F[650]], step=9)
        out = c.refit(wait=True)
        self.assertTrue(out["accepted"], out)
        Q = np.random.default_rng(8).standard_normal((4, D)).astype(np.float32)
        before = c.search(Q, k=20)
        corr0 = c.corrector()
        ckpt = c.checkpoint()
        fp = c.info()["index"]["fingerprint"]
        d.stop()
        d2 = self.start(*self.args(), data_dir=d.data_dir)
        c2 = d2.client
        corr = c2.corrector()
        self.assertEqual(corr["version"], 1)
        self.assertEqual(corr["pairs"], corr0["pairs"])
        self.assertEqual(corr["pairs"], {"buffered": 601, "total": 601})
        self.assertEqual(c2.search(Q, k=20), before)
        self.assertEqual(c2.checkpoint(), ckpt)
        self.assertEqual(c2.info()["index"]["fingerprint"], fp)
        t = c2.target(tid)
        self.assertEqual((f32(t["fresh"]), t["fresh_step"]), (self.F[650].tolist(), 9))
        # The sequence goes on after the restart.
        ack = c2.update([int(self.ids[700])], [self.F[700]])
        self.assertGreater(ack["seq"], out["trained_through_seq"])
        self.assertEqual(ack["buffered"], 602)
        # BUG: after a restart holdout is null although version 1 came from an
        # accepted refit; it should still describe the published corrector.
        self.assertIsNotNone(corr["holdout"], "holdout lost on restart")


if __name__ == "__main__":
    run()
