"""--serve-fresh-rows: a refit puts its pairs' fresh rows into the corrector
it publishes, and the published model scores those targets by their fresh
row (normalized like h(s)) instead of h(s). Checked over loopback: the
rows /v1/corrected and search answer with, that a later update waits for
the next refit (the version names what scores), that a restart (also under
--store bf16) and a checkpoint installed elsewhere give the same answers
bit for bit, the fresh_rows counts, the flag's refusals, and a coordinator
over two shards serving each shard its rows; with --age-fresh-rows, the
rows not re-encoded moved by the map the re-encoded ones teach."""

import os
import shutil
import struct
import subprocess
import sys

import numpy as np

from harness import FRESHD, run
from support import ApiCase, TempDir, call, metric_value, save_index, wait_until

N, D = 3000, 16
SPLIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients",
                     "python", "examples", "split_index.py")
COMMON = ("--corrector", "mlp", "--hidden", "16", "--normalize-output", "on",
          "--refit-every-pairs", "0", "--refit-every-seconds", "0")


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def bits(reply):
    return [[(h["id"], struct.pack("<f", h["score"])) for h in row] for row in reply["results"]]


def all_corrected(c, n):
    return np.concatenate([np.asarray(c.corrected(list(range(i, min(n, i + 1000))))["vectors"],
                                      np.float32) for i in range(0, n, 1000)])


class FreshRows(ApiCase):
    def setUp(self):
        self.tmp = TempDir.make(self)
        rng = np.random.default_rng(31)
        self.X = rng.standard_normal((N, D)).astype(np.float32)
        drift = 0.4 * rng.standard_normal((D, D)).astype(np.float32)
        # A drift a map of s explains in part, plus a per-target change.
        self.F = unit(self.X + self.X @ drift + 0.5 * rng.standard_normal((N, D)))
        self.Q = rng.standard_normal((6, D)).astype(np.float32)
        self.ipath, _ = save_index(self.tmp, self.X)

    def daemon(self, *extra, **kw):
        return self.start("--index", self.ipath, *COMMON, *extra, **kw)

    def test_refit_serves_the_rows_it_trained_on(self):
        d = self.daemon("--serve-fresh-rows")
        c = d.client
        c.update(range(400), self.F[:400], step=1)
        self.assertEqual(c.corrector()["fresh_rows"], 0, "before any refit")
        out = c.refit(wait=True)
        self.assertTrue(out["accepted"], out)
        self.assertEqual(c.corrector()["fresh_rows"], 400)
        self.assertEqual(metric_value(c.metrics(), "freshd_fresh_rows_served"), 400.0)
        # The model's memory: C, and an id and a row for each fresh row.
        self.assertEqual(c.info()["memory"]["model_bytes"], N * D * 4 + 400 * (8 + D * 4))
        v = np.asarray(c.corrected(list(range(10)) + list(range(400, 410)))["vectors"], np.float32)
        np.testing.assert_allclose(v[:10], self.F[:10], atol=1e-6)
        # Targets without a pair are h(s): near their fresh row, not equal.
        self.assertGreater(np.abs(v[10:] - self.F[400:410]).max(), 1e-3)
        t = c.target(3)
        np.testing.assert_allclose(t["corrected"], self.F[3], atol=1e-6)
        # A query equal to a served row finds it first, scored by it.
        found = c.search(self.F[:8] * 3.0, k=1)["results"]
        self.assertEqual([r[0]["id"] for r in found], list(range(8)))
        for i, r in enumerate(found):
            self.assertAlmostEqual(r[0]["score"], 3.0, places=5, msg=i)
        neg = c.negatives(self.F[:4], positives=[[9]] * 4, n=3, method="topk")["results"]
        self.assertEqual([r[0]["id"] for r in neg], [0, 1, 2, 3])
        # A newer row waits for the next refit: the version names the view.
        newer = unit(self.F[5] + 0.8 * self.X[5])
        before = c.corrected([5])
        c.update([5], [newer], step=2)
        self.assertEqual(c.corrected([5]), before)
        out = c.refit(wait=True)
        # Published even when the network does not beat the one serving:
        # then it is kept and only the rows are new ("fresh-rows").
        self.assertTrue(out["accepted"], out)
        after = c.corrected([5])
        self.assertEqual(after["corrector_version"], before["corrector_version"] + 1)
        np.testing.assert_allclose(after["vectors"][0], newer, atol=1e-6)
        # Nothing new: no publish of rows (a network may still win).
        out = c.refit(wait=True)
        self.assertNotEqual(out["method"], "fresh-rows", out)

    def test_a_refit_that_cannot_train_still_serves_the_rows(self):
        d = self.daemon("--serve-fresh-rows", "--min-pairs", "64")
        c = d.client
        c.update(range(10), self.F[:10], step=1)
        out = c.refit(wait=True)
        self.assertTrue(out["accepted"], out)
        self.assertEqual(out["method"], "fresh-rows")
        self.assertIsNone(out["holdout"], "nothing was evaluated")
        self.assertEqual(c.corrector()["fresh_rows"], 10)
        self.assertIsNone(c.corrector()["holdout"], "no network was trained")
        # Cleared pairs, then rows only: nothing served any more.
        self.assertEqual(call(d, "DELETE", "/v1/pairs").status, 200)
        out = c.refit(wait=True, rows_only=True)
        self.assertTrue(out["accepted"], out)
        self.assertEqual(c.corrector()["fresh_rows"], 0)
        self.assertEqual(metric_value(c.metrics(), "freshd_fresh_rows_served"), 0.0)
        np.testing.assert_allclose(c.corrected([3])["vectors"][0], unit(self.X[3]), atol=1e-6)

    def test_rows_wait_for_a_network_that_changes_width(self):
        d = self.daemon("--serve-fresh-rows", "--fresh-dim", "8")
        c = d.client
        c.update(range(100), self.F[:100, :8], step=1)
        out = c.refit(wait=True, rows_only=True)
        self.assertFalse(out["accepted"], out)
        self.assertIn("no network maps", out["reason"])
        self.assertEqual(c.corrector()["version"], 0)

    def test_rows_only_publishes_rows_without_training(self):
        d = self.daemon("--serve-fresh-rows")
        c = d.client
        c.update(range(400), self.F[:400], step=1)
        # Before any refit: the identity network with the rows.
        out = c.refit(wait=True, rows_only=True)
        self.assertTrue(out["accepted"], out)
        self.assertEqual(out["method"], "fresh-rows")
        self.assertEqual(c.corrector()["fresh_rows"], 400)
        np.testing.assert_allclose(c.corrected([7])["vectors"][0], self.F[7], atol=1e-6)
        np.testing.assert_allclose(c.corrected([700])["vectors"][0], unit(self.X[700]),
                                   atol=1e-6)
        self.assertTrue(c.refit(wait=True)["accepted"])
        trained = c.corrector()
        others = c.corrected(list(range(400, 420)))
        # A newer row for 5 and a first one for 900: published at once,
        # the network untouched (every other row the same bits).
        c.update([5, 900], [unit(self.X[5]), self.F[900]], step=2)
        out = c.refit(wait=True, rows_only=True)
        self.assertTrue(out["accepted"], out)
        self.assertEqual(out["version"], trained["version"] + 1)
        self.assertIsNone(out["holdout"], "a rows-only publish holds out nothing")
        self.assertEqual(c.corrector()["holdout"], trained["holdout"])
        v = c.corrected([5, 900])
        np.testing.assert_allclose(v["vectors"], [unit(self.X[5]), self.F[900]], atol=1e-6)
        again = c.corrected(list(range(400, 420)))
        self.assertEqual(again["vectors"], others["vectors"])
        self.assertEqual(c.corrector()["fresh_rows"], 401)
        self.assertEqual(c.corrector()["refits"]["accepted"], 3)
        # Nothing new: nothing published.
        out = c.refit(wait=True, rows_only=True)
        self.assertFalse(out["accepted"], out)
        self.assertIn("no fresh rows", out["reason"])
        self.assertEqual(c.corrector()["version"], trained["version"] + 1)

    def test_rows_only_needs_the_flag(self):
        d = self.daemon()
        self.assertError(call(d, "POST", "/v1/refit?rows_only=true&wait=true"), 409,
                         "conflict", "rows_only", "--serve-fresh-rows")

    def test_without_the_flag_every_row_is_h_of_s(self):
        d = self.daemon()
        c = d.client
        c.update(range(400), self.F[:400], step=1)
        self.assertTrue(c.refit(wait=True)["accepted"])
        self.assertEqual(c.corrector()["fresh_rows"], 0)
        v = np.asarray(c.corrected(list(range(10)))["vectors"], np.float32)
        self.assertGreater(np.abs(v - self.F[:10]).max(), 1e-3)

    def test_restart_store_and_checkpoint_keep_the_view(self):
        d = self.daemon("--serve-fresh-rows", keep_dir=True)
        self.addCleanup(shutil.rmtree, d.data_dir, True)
        c = d.client
        c.update(range(0, N, 3), self.F[::3], step=1)
        self.assertTrue(c.refit(wait=True)["accepted"])
        view, answers = all_corrected(c, N), bits(c.search(self.Q, k=25))
        version, ckpt = c.corrector()["version"], c.checkpoint()
        d.stop()
        # The rows are in the checkpoint: a restart without the flag, and
        # one under --store bf16, score as before, bit for bit.
        for extra in ((), ("--store", "bf16")):
            d2 = self.daemon(*extra, data_dir=d.data_dir)
            c2 = d2.client
            self.assertEqual(c2.corrector()["version"], version, extra)
            self.assertEqual(c2.corrector()["fresh_rows"], len(range(0, N, 3)), extra)
            np.testing.assert_array_equal(all_corrected(c2, N), view, str(extra))
            self.assertEqual(bits(c2.search(self.Q, k=25)), answers, extra)
            d2.stop()
        # Installed on another daemon, which has no pairs of its own.
        d3 = self.daemon()
        d3.client.put_checkpoint(ckpt)
        self.assertEqual(d3.client.corrector()["fresh_rows"], len(range(0, N, 3)))
        np.testing.assert_array_equal(all_corrected(d3.client, N), view)
        self.assertEqual(bits(d3.client.search(self.Q, k=25)), answers)

    def test_aged_rows_follow_a_drift_of_the_encoder(self):
        """--age-fresh-rows: the encoder moves by a common map between two
        steps; the rows it re-encoded teach the map, and the rows it did
        not re-encode are served moved by it. A restart serves the aged
        rows from the checkpoint; its first publish, without the records,
        serves the rows as sent."""
        d = self.daemon("--serve-fresh-rows", "--age-fresh-rows", keep_dir=True)
        self.addCleanup(shutil.rmtree, d.data_dir, True)
        c = d.client
        rng = np.random.default_rng(8)
        move = np.eye(D, dtype=np.float32) + 0.3 * rng.standard_normal((D, D)).astype(np.float32)
        first = self.F[:1500]
        c.update(range(1500), first, step=1)
        out = c.refit(wait=True, rows_only=True)
        self.assertTrue(out["accepted"], out)
        self.assertEqual(out["rows_aged"], {"fitted": False, "replaced": 0, "added": 1500,
                                            "moved": 0, "ridge_lambda": None})
        moved = unit(first @ move)
        noisy = unit(moved[:600] + 0.01 * rng.standard_normal((600, D)).astype(np.float32))
        c.update(range(600), noisy, step=2)
        out = c.refit(wait=True, rows_only=True)
        self.assertTrue(out["accepted"], out)
        aged = out["rows_aged"]
        self.assertTrue(aged["fitted"], aged)
        self.assertEqual((aged["replaced"], aged["added"], aged["moved"]), (600, 0, 900))
        self.assertGreater(aged["ridge_lambda"], 0)
        v = all_corrected(c, 1500)
        np.testing.assert_allclose(v[:600], noisy, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(v[600:], axis=1), 1.0, atol=1e-5)
        before = np.square(first[600:] - moved[600:]).sum(1).mean()
        after = np.square(v[600:] - moved[600:]).sum(1).mean()
        self.assertLess(after, before / 10, (after, before))
        # Searches score the aged rows.
        found = c.search(moved[[700, 1200]] * 2.0, k=1)["results"]
        self.assertEqual([r[0]["id"] for r in found], [700, 1200])
        version = c.corrector()["version"]
        d.stop()
        d2 = self.daemon("--serve-fresh-rows", "--age-fresh-rows", data_dir=d.data_dir)
        c2 = d2.client
        self.assertEqual(c2.corrector()["version"], version)
        np.testing.assert_array_equal(all_corrected(c2, 1500), v)
        c2.update([1600], [self.F[1600]], step=3)
        out = c2.refit(wait=True, rows_only=True)
        self.assertTrue(out["accepted"], out)
        self.assertFalse(out["rows_aged"]["fitted"], out)
        after_restart = all_corrected(c2, 1500)
        np.testing.assert_allclose(after_restart[:600], noisy, atol=1e-6)
        np.testing.assert_allclose(after_restart[600:], first[600:], atol=1e-6)

    def test_the_flags_need_an_mlp_and_no_shard(self):
        for args, needle in ((("--corrector", "affine"), "needs --corrector mlp"),
                             (("--corrector", "none"), "needs --corrector mlp"),
                             (("--shard",), "coordinator's flag"),
                             (("--max-pairs", "100000000"), "lower --max-pairs")):
            p = subprocess.run([FRESHD, "--index", self.ipath, "--serve-fresh-rows", *args,
                                "--listen", "127.0.0.1:0"],
                               capture_output=True, text=True, timeout=30)
            self.assertNotEqual(p.returncode, 0, args)
            self.assertIn(needle, p.stderr, args)
            self.assertEqual(p.stdout, "", args)
        for args, needle in ((("--index", self.ipath, "--age-fresh-rows"),
                              "--age-fresh-rows needs --serve-fresh-rows"),
                             (("--shards", "http://127.0.0.1:1", "--serve-fresh-rows",
                               "--age-fresh-rows"), "not with --shards")):
            p = subprocess.run([FRESHD, *args, "--listen", "127.0.0.1:0"],
                               capture_output=True, text=True, timeout=30)
            self.assertNotEqual(p.returncode, 0, args)
            self.assertIn(needle, p.stderr, args)
            self.assertEqual(p.stdout, "", args)


class ShardedFreshRows(ApiCase):
    """The coordinator fits on every shard's pairs; the checkpoint it
    installs carries all their rows, and each shard serves the rows of the
    targets it holds."""

    def test_each_shard_serves_its_rows(self):
        tmp = TempDir.make(self)
        rng = np.random.default_rng(5)
        X = rng.standard_normal((N, D)).astype(np.float32)
        F = unit(X + 0.5 * rng.standard_normal((N, D)))
        ids = np.arange(N, dtype=np.uint64) * 7 + 11
        ipath, jpath = save_index(tmp, X, ids, name="all")
        subprocess.run([sys.executable, SPLIT, "--parts", "2", "--ids", jpath, ipath,
                        os.path.join(tmp, "parts")], capture_output=True, text=True, check=True)
        shards = [self.start("--shard", "--index", os.path.join(tmp, "parts", "part-%d.npy" % s),
                             "--ids", os.path.join(tmp, "parts", "part-%d_ids.npy" % s), *COMMON)
                  for s in range(2)]
        coord = self.start("--shards", ",".join(s.url for s in shards), "--serve-fresh-rows",
                           "--refit-every-pairs", "0", "--refit-every-seconds", "0")
        self.assertTrue(wait_until(lambda: call(coord, "GET", "/readyz").status == 200,
                                   timeout=30))
        c = coord.client
        sent = np.arange(0, N, 4)
        c.update([int(i) for i in ids[sent]], F[sent], step=1)
        out = c.refit(wait=True)
        self.assertTrue(out["accepted"], out)
        self.assertEqual(c.corrector()["fresh_rows"], len(sent))
        per_shard = [s.client.corrector()["fresh_rows"] for s in shards]
        self.assertEqual(sum(per_shard), len(sent))
        self.assertTrue(all(n > 0 for n in per_shard), per_shard)
        # The coordinator's gauge sums the shards' as its probes see them.
        self.assertTrue(wait_until(lambda: metric_value(c.metrics(), "freshd_fresh_rows_served")
                                   == len(sent), timeout=30))
        probe = sent[[0, 1, len(sent) // 2, -1]]
        v = np.asarray(c.corrected([int(i) for i in ids[probe]])["vectors"], np.float32)
        np.testing.assert_allclose(v, F[probe], atol=1e-6)
        found = c.search(F[probe] * 2.0, k=1)["results"]
        self.assertEqual([r[0]["id"] for r in found], [int(i) for i in ids[probe]])
        # Rows only, through the coordinator: one new row, on its shard.
        one = int(ids[1])
        newer = unit(X[1])
        c.update([one], [newer], step=2)
        out = c.refit(wait=True, rows_only=True)
        self.assertTrue(out["accepted"], out)
        self.assertEqual(out["method"], "fresh-rows")
        np.testing.assert_allclose(c.corrected([one])["vectors"][0], newer, atol=1e-6)
        self.assertEqual(c.corrector()["fresh_rows"], len(sent) + 1)
        # Cleared on every shard, then rows only: none served.
        self.assertEqual(call(coord, "DELETE", "/v1/pairs").status, 200)
        out = c.refit(wait=True, rows_only=True)
        self.assertTrue(out["accepted"], out)
        self.assertEqual(c.corrector()["fresh_rows"], 0)
        self.assertTrue(wait_until(lambda: metric_value(c.metrics(), "freshd_fresh_rows_served")
                                   == 0, timeout=30))


if __name__ == "__main__":
    run()
