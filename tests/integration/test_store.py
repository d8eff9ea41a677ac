"""--store bf16 against --store f32 on the same index: identical answers
(ids and float32 scores, bit for bit) for stale and corrected searches,
top-k and seeded sampled negatives, with exclusions, before and after an
affine or mlp corrector (plain and normalized) is fitted, and over an index with
near-duplicate rows that bf16 alone cannot order; /v1/info reports the
store and the memory; what bf16 cannot load is refused with a message."""

import os
import struct
import subprocess

import numpy as np

from harness import FRESHD, run
from support import ApiCase, TempDir, metric_value, save_fvecs, save_index, wait_until

N, D = 12000, 72


def corpus(seed=1):
    """Normal rows, with groups of near-duplicates (moved by less than a
    bf16 step) and exact duplicates (ties broken by id)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D)).astype(np.float32)
    for g in range(0, N - 8, 61):
        for c in range(1, 8):
            X[g + c] = X[g]
            if c < 6:
                X[g + c] *= (1 + 2.0 ** -12 * rng.uniform(-1, 1, D)).astype(np.float32)
    return X


def near(X, b, seed):
    rng = np.random.default_rng(seed)
    heads = (np.arange(b) * 61 * 7) % (N - 8)
    heads -= heads % 61
    return (X[heads] + 0.05 * rng.standard_normal((b, D))).astype(np.float32), heads


def hits(reply):
    """(id, score bits) for every hit: equality means bitwise."""
    out = []
    for row in reply["results"]:
        out.append([(h["id"], struct.pack("<f", h["score"]),
                     struct.pack("<f", h["logprob"]) if "logprob" in h else None)
                    for h in row])
    return out


class Store(ApiCase):
    def setUp(self):
        self.tmp = TempDir.make(self)
        self.X = corpus()
        self.ipath, _ = save_index(self.tmp, self.X)

    def pair(self, *flags):
        common = ("--index", self.ipath, "--min-pairs", "64", "--refit-every-pairs", "0",
                  "--refit-every-seconds", "0") + flags
        return (self.start(*common, "--store", "f32"),
                self.start(*common, "--store", "bf16"))

    def same(self, a, b, fn):
        ra, rb = fn(a.client), fn(b.client)
        self.assertEqual(ra.get("corrector_version"), rb.get("corrector_version"))
        self.assertEqual(hits(ra), hits(rb))
        return ra

    def compare_all(self, a, b):
        Q, heads = near(self.X, 40, 3)
        excl = [[int(h), int(h) + 2] if i % 2 else [] for i, h in enumerate(heads)]
        for scoring in ("stale", "corrected"):
            for k in (1, 10, 100):
                r = self.same(a, b, lambda c: c.search(Q, k=k, scoring=scoring))
                self.assertEqual(len(r["results"][0]), k)
            self.same(a, b, lambda c: c.search(Q, k=10, exclude=excl, scoring=scoring))
            self.same(a, b, lambda c: c.negatives(Q, positives=[[int(h)] for h in heads],
                                                  n=16, method="topk", scoring=scoring))
            self.same(a, b, lambda c: c.negatives(Q, positives=[[int(h)] for h in heads],
                                                  n=16, method="sample", seed=11,
                                                  temperature=0.5, scoring=scoring))
        # One query alone equals the same query in a batch (no batch effect).
        one = a.client.search(Q[:1], k=10)["results"][0]
        self.assertEqual(hits({"results": [one]}),
                         hits({"results": [b.client.search(Q, k=10)["results"][0]]}))

    def fit(self, a, b, unit):
        """The same affine corrector in both: fitted in one, copied."""
        rng = np.random.default_rng(5)
        M = (np.eye(D) + 0.2 * rng.standard_normal((D, D))).astype(np.float32)
        ids = list(range(0, N, 7))
        G = self.X[ids] @ M.T
        if unit:
            G /= np.linalg.norm(G, axis=1, keepdims=True)
        a.client.update(ids, G)
        r = a.client.refit(wait=True)
        self.assertTrue(r["accepted"], r)
        blob = a.client.checkpoint()
        b.client.put_checkpoint(blob)
        self.assertEqual(a.client.corrector()["version"], b.client.corrector()["version"])

    def test_affine_identical_answers(self):
        a, b = self.pair("--corrector", "affine", "--normalize-output", "off")
        self.compare_all(a, b)
        self.fit(a, b, unit=False)
        self.compare_all(a, b)

    def test_normalized_affine_identical_answers(self):
        a, b = self.pair("--corrector", "affine", "--normalize-output", "on")
        self.fit(a, b, unit=True)
        self.compare_all(a, b)

    def test_mlp_corrected_in_bf16(self):
        """h(S) in bf16 in memory, its float32 rows in an unnamed file in
        the data dir: the same answers, half the model's memory, and no
        file left in the data dir."""
        for unit in (False, True):
            with self.subTest(normalized=unit):
                a, b = self.pair("--corrector", "mlp", "--hidden", "32",
                                 "--normalize-output", "on" if unit else "off")
                before = sorted(os.listdir(b.data_dir))
                self.fit(a, b, unit=unit)
                self.compare_all(a, b)
                ma, mb = a.client.info()["memory"], b.client.info()["memory"]
                self.assertEqual(ma["model_bytes"], N * D * 4)
                self.assertEqual(mb["model_bytes"], N * (D * 2 + 4))
                self.assertEqual(mb["mapped_bytes"], 2 * N * D * 4)  # S and h(S)
                self.assertEqual(sorted(os.listdir(b.data_dir)), before)
                self.assertGreater(metric_value(b.client.metrics(), "freshd_rescored_rows_total"), 0)
                # A restart rebuilds h(S) from the checkpoint the same way.
                b.stop()
                b.start()
                self.assertEqual(b.client.info()["memory"]["model_bytes"], N * (D * 2 + 4))
                self.compare_all(a, b)

    def test_info_reports_store_and_memory(self):
        a, b = self.pair("--corrector", "affine")
        ia, ib = a.client.info(), b.client.info()
        self.assertEqual(ia["store"], "f32")
        self.assertEqual(ib["store"], "bf16")
        self.assertEqual(ia["index"]["fingerprint"], ib["index"]["fingerprint"])
        ma, mb = ia["memory"], ib["memory"]
        self.assertEqual(ma["mapped_bytes"], 0)
        self.assertEqual(mb["mapped_bytes"], N * D * 4)
        # bf16 rows and a norm a row instead of float32 rows.
        self.assertEqual(ma["index_bytes"] - mb["index_bytes"], N * D * 2 - N * 4)
        for store in ("f32", "bf16"):
            for kind in ("none", "affine", "mlp"):
                self.assertGreater(mb["largest_targets"][store][kind], N)
        self.assertGreater(mb["largest_targets"]["bf16"]["affine"],
                           1.8 * mb["largest_targets"]["f32"]["affine"])
        self.assertGreater(mb["machine_bytes"], mb["resident_bytes"])

    def test_reload_keeps_the_store(self):
        a, b = self.pair("--corrector", "affine")
        Y = corpus(seed=9)
        save_index(a.data_dir, Y, name="next")
        save_index(b.data_dir, Y, name="next")
        for d in (a, b):
            d.client.reload("next.npy")
        for d in (a, b):
            st = wait_until(lambda d=d: (d.client.info()["index"].get("reload") or {})
                            .get("state") in ("done", "failed"), timeout=30)
            self.assertTrue(st)
            self.assertEqual(d.client.info()["index"]["reload"]["state"], "done")
        self.assertEqual(b.client.info()["store"], "bf16")
        self.X = Y
        self.compare_all(a, b)

    def test_refusals(self):
        def freshd(*args, data="d"):
            return subprocess.run([FRESHD, "--listen", "127.0.0.1:0", "--data-dir",
                                   os.path.join(self.tmp, data)] + list(args),
                                  capture_output=True, text=True, timeout=60)
        fv = os.path.join(self.tmp, "x.fvecs")
        save_fvecs(fv, self.X[:100])
        r = freshd("--index", fv, "--store", "bf16", data="d1")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("convert it to .npy", r.stderr)
        Y = self.X[:100].copy()
        Y[4, 9] = np.finfo(np.float32).max
        p, _ = save_index(self.tmp, Y, name="big")
        r = freshd("--index", p, "--store", "bf16", data="d2")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("row 4, column 9", r.stderr)
        r = freshd("--index", p, "--store", "f16", data="d3")
        self.assertEqual(r.returncode, 2)
        self.assertIn("store", r.stderr)


if __name__ == "__main__":
    run()
