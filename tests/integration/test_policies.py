"""The flags that shape the pair buffer and the refit policy: --max-pairs
(oldest evicted), --max-step-lag, --refit-every-pairs, --refit-every-seconds,
--normalize-output; a `refit?wait=true` sees every update acknowledged before
it; and a full queue answers 503 overloaded with Retry-After."""

import shutil
import tempfile
import threading
import time

import numpy as np

from harness import run
from freshd_client import Client  # noqa: E402 (harness puts it on the path)
from support import (SLOW, ApiCase, call, index_args, int_matrix, save_index, wait_until)

N, D = 1000, 16


class Policies(ApiCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.X = int_matrix(N, D, seed=101)
        self.F = (self.X * 1.5 + 0.5).astype(np.float32)
        self.ipath, _ = save_index(self.tmp, self.X)

    def test_max_pairs_evicts_the_oldest(self):
        d = self.start(*index_args(self.ipath, None, "--max-pairs", "50"))
        c = d.client
        self.assertEqual(c.update(range(40), self.F[:40])["buffered"], 40)
        self.assertEqual(c.update(range(40, 80), self.F[40:80])["buffered"], 50)
        self.assertEqual(c.corrector()["pairs"], {"buffered": 50, "total": 80})
        for i in (0, 29):
            self.assertIsNone(c.target(i)["fresh"], i)
        for i in (30, 39, 40, 79):
            self.assertIsNotNone(c.target(i)["fresh"], i)

    def test_max_step_lag(self):
        # Interpretation: "drops, at each refit, pairs whose step is more than
        # L behind the newest" removes them from the buffer, not only from
        # that refit's training set.
        d = self.start(*index_args(self.ipath, None, "--max-step-lag", "10"))
        c = d.client
        c.update(range(100), self.F[:100], step=1)
        c.update(range(100, 200), self.F[100:200], step=50)
        c.update(range(200, 300), self.F[200:300], step=40)      # exactly L behind: kept
        out = c.refit(wait=True)
        self.assertTrue(out["accepted"], out)
        self.assertEqual(out.get("pairs", {}).get("used", 200), 200, out)
        corr = c.corrector()
        self.assertEqual(corr["pairs"]["buffered"], 200, "pairs 49 steps behind still buffered")
        self.assertIsNone(c.target(5)["fresh"])
        self.assertEqual(c.target(205)["fresh_step"], 40)

    def test_refit_every_pairs(self):
        d = self.start("--index", self.ipath, "--refit-every-pairs", "100",
                       "--refit-every-seconds", "0")
        c = d.client
        c.update(range(90), self.F[:90])
        time.sleep(0.3)
        self.assertEqual(c.corrector()["version"], 0)
        c.update(range(90, 120), self.F[90:120])
        corr = wait_until(lambda: (lambda s: s if s["version"] >= 1 else None)(c.corrector()))
        self.assertTrue(corr, "no refit after 120 new pairs with --refit-every-pairs 100")

    def test_refit_every_seconds(self):
        d = self.start("--index", self.ipath, "--refit-every-pairs", "0",
                       "--refit-every-seconds", "1")
        c = d.client
        time.sleep(1.2)
        self.assertEqual(c.corrector()["refits"]["started"], 0, "refit without new pairs")
        c.update(range(200), self.F[:200])
        corr = wait_until(lambda: (lambda s: s if s["version"] >= 1 else None)(c.corrector()),
                          timeout=6)
        self.assertTrue(corr, "no refit within seconds of new pairs with --refit-every-seconds 1")

    def unit(self):
        return (self.F / np.linalg.norm(self.F, axis=1, keepdims=True)).astype(np.float32)

    def test_normalize_auto_and_off(self):
        U = self.unit()
        for mode, want in (("auto", True), ("off", False)):
            with self.subTest(mode=mode):
                d = self.start(*index_args(self.ipath, None, "--normalize-output", mode))
                c = d.client
                self.assertIs(c.corrector()["normalize"], False)
                c.update(range(300), U[:300])
                self.assertTrue(c.refit(wait=True)["accepted"])
                self.assertIs(c.corrector()["normalize"], want)
                ids = list(range(0, N, 7))
                v = np.array(c.corrected(ids)["vectors"], dtype=np.float64)
                norms = np.linalg.norm(v, axis=1)
                if want:
                    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
                else:
                    self.assertGreater(np.abs(norms - 1).max(), 1e-3)
                q = np.linspace(-1, 1, D).astype(np.float32)
                out = c.search(q, k=5)
                full = np.array(c.corrected(list(range(N)))["vectors"], dtype=np.float64) @ q
                for h in out["results"][0]:
                    self.assertAlmostEqual(h["score"], full[h["id"]], delta=1e-4)
                self.assertAlmostEqual(out["results"][0][0]["score"], full.max(), delta=1e-4)
        # Auto stays off for fresh vectors that are not unit-norm.
        d = self.start(*index_args(self.ipath, None, "--normalize-output", "auto"))
        d.client.update(range(300), self.F[:300])
        self.assertTrue(d.client.refit(wait=True)["accepted"])
        self.assertIs(d.client.corrector()["normalize"], False)

    def test_normalize_on_from_the_start(self):
        # BUG?: with --normalize-output on, GET /v1/corrector says
        # "normalize": false and corrected scores are not normalized until a
        # refit publishes (and again after a reset).
        d = self.start(*index_args(self.ipath, None, "--normalize-output", "on"))
        c = d.client
        self.assertIs(c.corrector()["normalize"], True)
        v = np.array(c.corrected([1, 2, 3])["vectors"], dtype=np.float64)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


class RefitSeesEveryAcknowledgedUpdate(ApiCase):
    def test_wait_answers_with_a_refit_that_saw_the_update(self):
        tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, tmp, True)
        n, dim = 4000, 64
        rng = np.random.default_rng(102)
        X = rng.standard_normal((n, dim)).astype(np.float32)
        W1 = rng.standard_normal((dim, 64)).astype(np.float32) / 8
        W2 = rng.standard_normal((64, dim)).astype(np.float32) / 4
        F = X + np.maximum(X @ W1, 0) @ W2
        ip, _ = save_index(tmp, X)
        d = self.start(*index_args(ip, None, "--hidden", "512", "--refit-max-seconds", "1.5"))
        first = d.client.update(range(3000), F[:3000])
        answers = {}

        def wait_refit(name):
            try:
                answers[name] = Client(d.url, timeout=60 * SLOW).refit(wait=True)
            except Exception as e:  # noqa: BLE001
                answers[name] = e

        a = threading.Thread(target=wait_refit, args=("a",))
        a.start()
        st = wait_until(lambda: (lambda s: s if s["state"] != "idle" else None)(d.client.corrector()))
        self.assertTrue(st, "the refit did not start")
        second = d.client.update(range(3000, 3100), F[3000:3100])
        self.assertGreater(second["seq"], first["seq"])
        # A refit running while this call arrives started before the update:
        # the answer must come from one that includes it.
        self.assertIn(d.client.corrector()["state"], ("training", "materializing"),
                      "the first refit finished too early for this test")
        b = threading.Thread(target=wait_refit, args=("b",))
        b.start()
        a.join(60 * SLOW)
        b.join(60 * SLOW)
        self.assertIsInstance(answers["a"], dict, answers)
        self.assertIsInstance(answers["b"], dict, answers)
        self.assertGreaterEqual(answers["a"]["trained_through_seq"], first["seq"])
        self.assertGreaterEqual(answers["b"]["trained_through_seq"], second["seq"])


class Overload(ApiCase):
    def test_full_queue_is_503_with_retry_after(self):
        tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, tmp, True)
        rng = np.random.default_rng(103)
        X = rng.standard_normal((20000, 64)).astype(np.float32)
        ip, _ = save_index(tmp, X)
        d = self.start(*index_args(ip, None, "--max-queue", "4", "--max-batch", "4",
                                   "--threads", "1"))
        outcomes = []
        lock = threading.Lock()
        Q = rng.standard_normal((4, 64)).astype(np.float32)

        def client():
            for _ in range(8):
                r = call(d, "POST", "/v1/search", {"vectors": Q.tolist(), "k": 10})
                with lock:
                    outcomes.append(r)

        threads = [threading.Thread(target=client) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120 * SLOW)
        statuses = [r.status for r in outcomes]
        self.assertEqual(len(statuses), 128)
        self.assertTrue(set(statuses) <= {200, 503}, set(statuses))
        busy = [r for r in outcomes if r.status == 503]
        self.assertTrue(busy, "no request was refused with a queue of 4")
        for r in busy[:5]:
            self.assertError(r, 503, "overloaded")
            self.assertIsNotNone(r.header("Retry-After"))
            self.assertTrue(r.header("Retry-After").isdigit(), r.header("Retry-After"))
        ok = [r.json() for r in outcomes if r.status == 200]
        self.assertTrue(ok)
        self.assertTrue(all(x == ok[0] for x in ok))
        # Once the burst is over, it serves again.
        self.assertEqual(call(d, "POST", "/v1/search", {"vectors": Q.tolist()}).status, 200)


if __name__ == "__main__":
    run()
