"""POST /v1/index/reload: only files under the data dir, same dimension (else
400), 202 then an atomic swap: new fingerprint, corrector version + 1 and
identity, pair buffer cleared, exact answers from the new index; a reload
while one loads is 409; the reloaded index wins over --index on restart."""

import os
import shutil
import tempfile
import threading

import numpy as np

from harness import run
from support import (ApiCase, brute_topk, call, hits, index_args, int_matrix, save_index,
                     sparse_ids, wait_until)

D = 8


class Reload(ApiCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.X = int_matrix(500, D, seed=111)
        self.ipath, _ = save_index(self.tmp, self.X)

    def reload_done(self, c, path_end):
        def check():
            r = c.info()["index"].get("reload")
            if r and r.get("state") in ("done", "failed") and r.get("path", "").endswith(path_end):
                return r
            return None
        return wait_until(check, timeout=20)

    def test_reload_swaps_the_index(self):
        d = self.start(*index_args(self.ipath), keep_dir=True)
        self.addCleanup(shutil.rmtree, d.data_dir, True)
        c = d.client
        c.update(range(100), self.X[:100] * 2 + 1)
        self.assertTrue(c.refit(wait=True)["accepted"])
        fp0 = c.info()["index"]["fingerprint"]
        X2 = int_matrix(700, D, seed=112)
        ids2 = sparse_ids(700, seed=113)
        np.save(os.path.join(d.data_dir, "new.npy"), X2)
        np.save(os.path.join(d.data_dir, "new-ids.npy"), ids2)
        # Outside the data dir: 400 naming the path, nothing changes.
        for path in ("/etc/hostname", self.ipath, "../../etc/hostname"):
            with self.subTest(path=path):
                r = call(d, "POST", "/v1/index/reload", {"path": path})
                self.assertError(r, 400, "invalid_argument", "path")
        self.assertEqual(c.info()["index"]["fingerprint"], fp0)
        self.assertEqual(c.corrector()["version"], 1)
        r = call(d, "POST", "/v1/index/reload", {"path": "new.npy", "ids_path": "new-ids.npy"})
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json(), {"state": "loading"})
        st = self.reload_done(c, "new.npy")
        self.assertTrue(st, "the reload did not finish")
        self.assertEqual(st["state"], "done", st)
        info = c.info()
        self.assertEqual(info["targets"], 700)
        self.assertNotEqual(info["index"]["fingerprint"], fp0)
        self.assertTrue(info["index"]["source"].endswith("new.npy"))
        corr = c.corrector()
        self.assertEqual(corr["version"], 2)
        self.assertEqual(corr["pairs"]["buffered"], 0)
        Q = int_matrix(3, D, seed=114)
        out = c.search(Q, k=15)
        self.assertEqual(out["corrector_version"], 2)
        for i, q in enumerate(Q):
            self.assertEqual(hits(out["results"][i]), brute_topk(X2, ids2, q, 15))
        self.assertEqual(c.search(Q, k=15, scoring="stale")["results"], out["results"])
        t = c.target(int(ids2[5]))
        self.assertEqual(t["stale"], X2[5].tolist())
        self.assertEqual(t["corrected"], X2[5].tolist())
        old_only = next(i for i in range(500) if i not in set(int(x) for x in ids2))
        self.assertError(call(d, "GET", "/v1/targets/%d" % old_only), 404, "not_found", str(old_only))
        fp2 = info["index"]["fingerprint"]
        # Restart with the old --index: the reloaded index wins, with a warning.
        d.stop()
        d2 = self.start(*index_args(self.ipath), data_dir=d.data_dir)
        info = d2.client.info()
        self.assertEqual(info["index"]["fingerprint"], fp2)
        self.assertEqual(info["targets"], 700)
        self.assertEqual(d2.client.corrector()["version"], 2)
        self.assertEqual(d2.client.search(Q, k=15)["results"], out["results"])
        self.assertRegex(d2.read_stderr(), r"(?i)warn.*new\.npy|new\.npy.*warn")

    def test_searches_during_a_reload(self):
        # Several threads search while a larger index loads and swaps in:
        # every answer is exact for the old index or for the new one.
        d = self.start(*index_args(self.ipath))
        c = d.client
        X2 = int_matrix(200000, D, seed=115)
        np.save(os.path.join(d.data_dir, "big.npy"), X2)
        Q = int_matrix(4, D, seed=116)
        old = [brute_topk(self.X, np.arange(500, dtype=np.uint64), q, 10) for q in Q]
        new = [brute_topk(X2, np.arange(200000, dtype=np.uint64), q, 10) for q in Q]
        stop, errors, seen = threading.Event(), [], set()

        def searcher():
            from freshd_client import Client
            cl = Client(d.url)
            try:
                while not stop.is_set():
                    out = cl.search(Q, k=10)
                    got = [hits(r) for r in out["results"]]
                    if got == old:
                        seen.add("old")
                    elif got == new:
                        seen.add("new")
                    else:
                        errors.append(got)
            except Exception as e:  # noqa: BLE001 - any failure counts
                errors.append(e)
            finally:
                cl.close()

        threads = [threading.Thread(target=searcher) for _ in range(6)]
        for t in threads:
            t.start()
        r = call(d, "POST", "/v1/index/reload", {"path": "big.npy"})
        self.assertEqual(r.status, 202, r)
        st = self.reload_done(c, "big.npy")
        wait_until(lambda: "new" in seen, timeout=20)
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(st["state"], "done", st)
        self.assertEqual(errors, [])
        self.assertEqual(seen, {"old", "new"})

    def test_reload_of_another_dimension_is_400(self):
        d = self.start(*index_args(self.ipath))
        np.save(os.path.join(d.data_dir, "narrow.npy"), int_matrix(500, D - 2, seed=115))
        r = call(d, "POST", "/v1/index/reload", {"path": "narrow.npy"})
        self.assertError(r, 400, "invalid_argument")
        self.assertEqual(d.client.info()["dim"], D)
        self.assertEqual(d.client.corrector()["version"], 0)

    def test_reload_while_loading_is_409(self):
        d = self.start(*index_args(self.ipath))
        big = int_matrix(600000, D, seed=116)
        np.save(os.path.join(d.data_dir, "big.npy"), big)
        r1 = call(d, "POST", "/v1/index/reload", {"path": "big.npy"})
        r2 = call(d, "POST", "/v1/index/reload", {"path": "big.npy"})
        self.assertEqual(r1.status, 202, r1)
        self.assertError(r2, 409, "conflict")
        st = self.reload_done(d.client, "big.npy")
        self.assertTrue(st)
        self.assertEqual(st["state"], "done", st)
        self.assertEqual(d.client.info()["targets"], 600000)
        self.assertEqual(d.client.corrector()["version"], 1)
        # Bad bodies.
        for body, needle in (({}, "path"), ({"path": 5}, "path"),
                             ({"path": "big.npy", "ids_path": 3}, "ids_path"),
                             ({"path": "big.npy", "other": 1}, "other")):
            self.assertError(call(d, "POST", "/v1/index/reload", body), 400, "invalid_argument",
                             needle)


if __name__ == "__main__":
    run()
