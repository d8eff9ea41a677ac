"""Exact search: an integer-valued float32 index (every score exact, many
ties) with shuffled, non-sequential uint64 ids (some above 2^63), checked
against numpy brute force — ids and scores, ties by ascending id — for
several k, exclusions, both scorings, batched queries, and the other index
formats (.fvecs, int64 ids)."""

import os
import shutil
import tempfile

import numpy as np

from harness import run
from support import (BIG_ID, BIG_ID2, ApiCase, Daemon, b64, brute_topk, call, hits, index_args,
                     int_matrix, save_fvecs, save_index, sparse_ids)

N, D = 3000, 16


class Exact(ApiCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="freshd-it-files-")
        X = int_matrix(N, D, seed=61)
        ids = sparse_ids(N, seed=62)
        cls.big_rows = [int(np.where(ids == np.uint64(b))[0][0]) for b in (BIG_ID, BIG_ID2)]
        # The big ids share their vectors with smaller ids: they tie, and
        # the smaller id must come first.
        free = [r for r in range(N) if r not in cls.big_rows]
        cls.twin_rows = free[17:19]
        cls.third_row = free[100]
        # Rows of all 3s score highest for all-positive queries: a big id
        # among them checks the order of ties at the very top.
        X[cls.big_rows[0]] = X[cls.twin_rows[0]] = X[cls.third_row] = 3
        # The other big id and its twin hold the only vector of its kind.
        X[cls.big_rows[1]] = X[cls.twin_rows[1]] = np.tile([3, -3], D // 2)
        cls.X, cls.ids = X, ids
        cls.ipath, cls.jpath = save_index(cls.dir, X, ids)
        cls.d = Daemon(*index_args(cls.ipath, cls.jpath))
        rng = np.random.default_rng(63)
        Q = rng.integers(-3, 4, size=(12, D)).astype(np.float32)
        Q[0] = 1                                 # all-positive: the 3-rows on top
        Q[1] = X[cls.big_rows[1]]                # the other big id near the top
        Q[2] = 0                                 # every score 0: pure id order
        Q[3, :] = 0
        Q[3, 0] = 1                              # few distinct scores: huge ties
        cls.Q = Q

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.stop()
        finally:
            cls.d.cleanup()
            shutil.rmtree(cls.dir, True)

    def expect(self, k, excludes=None):
        return [brute_topk(self.X, self.ids, q, k, excludes[i] if excludes else ())
                for i, q in enumerate(self.Q)]

    def check(self, body, want):
        r = call(self.d, "POST", "/v1/search", body)
        self.assertEqual(r.status, 200, r)
        out = r.json()
        self.assertEqual(out["corrector_version"], 0)
        got = [hits(x) for x in out["results"]]
        self.assertEqual(len(got), len(want))
        for i, (g, w) in enumerate(zip(got, want)):
            self.assertEqual(g, w, "query %d" % i)
            for _, s in g:
                self.assertIsInstance(s, float)
        return out

    def test_k_values_both_scorings(self):
        for k in (1, 10, 1000):
            want = self.expect(k)
            for scoring in ("stale", "corrected"):
                with self.subTest(k=k, scoring=scoring):
                    self.check({"vectors": self.Q.tolist(), "k": k, "scoring": scoring}, want)
                    self.check({"vectors_b64": [b64(q) for q in self.Q], "k": k,
                                "scoring": scoring}, want)

    def test_ties_and_big_ids(self):
        out = self.check({"vectors": self.Q[:4].tolist(), "k": 5}, self.expect(5)[:4])
        top = [h["id"] for h in out["results"][0]]
        # Three rows of 3s tie on top: ascending unsigned id, so 2^64-1 last.
        self.assertEqual(top[:3], sorted([int(self.ids[self.third_row]), int(self.ids[self.twin_rows[0]]),
                                          BIG_ID]))
        self.assertEqual(top[2], BIG_ID)
        ids1 = [h["id"] for h in out["results"][1]]
        self.assertIn(BIG_ID2, ids1)
        self.assertLess(ids1.index(int(self.ids[self.twin_rows[1]])), ids1.index(BIG_ID2))
        zero = [h["id"] for h in out["results"][2]]
        self.assertEqual(zero, sorted(int(i) for i in self.ids)[:5])
        self.assertTrue(all(h["score"] == 0.0 for h in out["results"][2]))

    def test_exclusions(self):
        for k in (1, 10, 1000):
            excludes = []
            for i, q in enumerate(self.Q):
                top = [t for t, _ in brute_topk(self.X, self.ids, q, 30)]
                ex = top[::3] + [5, 2 ** 62 + 1]            # unknown ids exclude nothing
                if i == 0:
                    ex.append(BIG_ID)
                excludes.append(ex)
            with self.subTest(k=k):
                want = self.expect(k, excludes)
                self.check({"vectors": self.Q.tolist(), "k": k, "exclude": excludes}, want)
                self.check({"vectors": self.Q.tolist(), "k": k, "exclude": excludes,
                            "scoring": "stale"}, want)
                for row in want[0]:
                    self.assertNotIn(row[0], excludes[0])

    def test_big_ids_round_trip(self):
        for big, row in zip((BIG_ID, BIG_ID2), self.big_rows):
            t = self.d.client.target(big)
            self.assertEqual(t["id"], big)
            self.assertEqual(t["stale"], self.X[row].tolist())
        out = self.d.client.corrected([BIG_ID2, BIG_ID])
        self.assertEqual(out["vectors"], self.X[self.big_rows[::-1]].tolist())
        # Negatives with a big positive: excluded, and the result is exact.
        q = self.Q[0]
        out = self.d.client.negatives(q, positives=[[BIG_ID]], n=4, method="topk")
        self.assertEqual(hits(out["results"][0]), brute_topk(self.X, self.ids, q, 4, [BIG_ID]))

    def test_batched_queries_match_single_queries(self):
        rng = np.random.default_rng(64)
        Q = rng.integers(-3, 4, size=(200, D)).astype(np.float32)
        r = call(self.d, "POST", "/v1/search", {"vectors_b64": [b64(q) for q in Q], "k": 10})
        self.assertEqual(r.status, 200, r)
        res = r.json()["results"]
        self.assertEqual(len(res), 200)
        for i in range(0, 200, 9):
            self.assertEqual(hits(res[i]), brute_topk(self.X, self.ids, Q[i], 10), "query %d" % i)


class SmallerThanK(ApiCase):
    def test_k_larger_than_n(self):
        tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, tmp, True)
        n = 700
        X = int_matrix(n, D, seed=65)
        ids = sparse_ids(n, seed=66)
        ip, jp = save_index(tmp, X, ids)
        d = self.start(*index_args(ip, jp))
        Q = int_matrix(3, D, seed=67)
        for scoring in ("corrected", "stale"):
            out = d.client.search(Q, k=1000, scoring=scoring)
            for i, q in enumerate(Q):
                self.assertEqual(len(out["results"][i]), n)
                self.assertEqual(hits(out["results"][i]), brute_topk(X, ids, q, 1000))
        ex = [[int(i) for i in ids[:650]], [], [BIG_ID]]
        out = d.client.search(Q, k=100, exclude=ex)
        self.assertEqual(len(out["results"][0]), 50)
        for i, q in enumerate(Q):
            self.assertEqual(hits(out["results"][i]), brute_topk(X, ids, q, 100, ex[i]))


class OtherFormats(ApiCase):
    def test_fvecs_and_int64_ids(self):
        tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, tmp, True)
        n = 500
        X = int_matrix(n, D, seed=68)
        Q = int_matrix(4, D, seed=69)
        npy, _ = save_index(tmp, X)
        fv = os.path.join(tmp, "index.fvecs")
        save_fvecs(fv, X)
        a = self.start(*index_args(npy))
        b = self.start(*index_args(fv))
        seq = np.arange(n, dtype=np.uint64)
        for d in (a, b):
            info = d.client.info()
            self.assertEqual((info["targets"], info["dim"]), (n, D))
            out = d.client.search(Q, k=20)
            for i, q in enumerate(Q):
                self.assertEqual(hits(out["results"][i]), brute_topk(X, seq, q, 20))
        self.assertEqual(a.client.info()["index"]["fingerprint"],
                         b.client.info()["index"]["fingerprint"])
        # int64 ids, non-sequential.
        ids = (np.arange(n, dtype=np.int64) * 13 + 2 ** 40)[::-1].copy()
        jp = os.path.join(tmp, "ids64.npy")
        np.save(jp, ids)
        c = self.start(*index_args(npy, jp))
        out = c.client.search(Q, k=20)
        for i, q in enumerate(Q):
            self.assertEqual(hits(out["results"][i]), brute_topk(X, ids.astype(np.uint64), q, 20))
        self.assertEqual(c.client.target(int(ids[3]))["stale"], X[3].tolist())


if __name__ == "__main__":
    run()
