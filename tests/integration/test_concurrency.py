"""Sixteen searching clients while another posts updates and triggers refits
(and automatic refits run every few pairs): every request succeeds, every
client sees the corrector version only grow, stale answers never change,
one version always gives the same corrected answer, and SIGTERM at the end
exits 0 promptly."""

import shutil
import tempfile
import threading
import time

import numpy as np

from harness import run
from freshd_client import Client  # noqa: E402 (harness puts it on the path)
from support import SLOW, ApiCase, brute_topk, hits, int_matrix, save_index, sparse_ids

N, D = 3000, 16
THREADS = 16
DURATION = 3.0


class Concurrency(ApiCase):
    def test_searches_during_updates_and_refits(self):
        tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, tmp, True)
        X = int_matrix(N, D, seed=71)
        ids = sparse_ids(N, seed=72)
        ip, jp = save_index(tmp, X, ids)
        d = self.start("--index", ip, "--ids", jp, "--corrector", "mlp", "--hidden", "8",
                       "--refit-every-pairs", "150", "--refit-every-seconds", "0",
                       "--min-pairs", "64")
        rng = np.random.default_rng(73)
        Qs = int_matrix(3, D, seed=74)                 # stale-scored: exact answers known
        stale_want = [brute_topk(X, ids, q, 10) for q in Qs]
        Qc = rng.standard_normal((2, D)).astype(np.float32)  # corrected-scored
        stop = threading.Event()
        errors = []
        per_version = {}                               # version -> corrected answer
        lock = threading.Lock()
        counts = [0] * THREADS
        seen = [set() for _ in range(THREADS)]

        def searcher(t):
            c = Client(d.url)
            last = -1
            try:
                while not stop.is_set():
                    if counts[t] % 3 == 0:
                        out = c.search(Qs, k=10, scoring="stale")
                        got = [hits(r) for r in out["results"]]
                        if got != stale_want:
                            errors.append("thread %d: stale answer changed" % t)
                    else:
                        out = c.search(Qc, k=10)
                        key = [[(h["id"], h["score"]) for h in r] for r in out["results"]]
                        with lock:
                            prev = per_version.setdefault(out["corrector_version"], key)
                        if prev != key:
                            errors.append("thread %d: version %d answered differently"
                                          % (t, out["corrector_version"]))
                    v = out["corrector_version"]
                    if v < last:
                        errors.append("thread %d: version went from %d to %d" % (t, last, v))
                    last = v
                    seen[t].add(v)
                    counts[t] += 1
            except Exception as e:  # noqa: BLE001 - every failure is reported
                errors.append("thread %d: %r" % (t, e))
            finally:
                c.close()

        writer_log = {"updates": 0, "refits": 0, "accepted": 0}

        def writer():
            c = Client(d.url)
            step = 0
            try:
                while not stop.is_set():
                    step += 1
                    # A drifting new encoder: each phase differs, so refits
                    # keep beating the published corrector.
                    phase = step // 4
                    M = np.eye(D, dtype=np.float32) * (1.0 + 0.2 * phase) + 0.1 * phase * np.roll(
                        np.eye(D, dtype=np.float32), 1, axis=1)
                    rows = rng.choice(N, size=60, replace=False)
                    ack = c.update([int(ids[r]) for r in rows], X[rows] @ M, step=step)
                    if ack["accepted"] != 60:
                        errors.append("writer: accepted %r" % ack)
                    writer_log["updates"] += 1
                    if step % 3 == 0:
                        c.refit()
                        writer_log["refits"] += 1
                    if step % 7 == 0:
                        out = c.refit(wait=True)
                        writer_log["refits"] += 1
                        writer_log["accepted"] += bool(out["accepted"])
                    time.sleep(0.01)
            except Exception as e:  # noqa: BLE001
                errors.append("writer: %r" % e)
            finally:
                c.close()

        threads = [threading.Thread(target=searcher, args=(t,)) for t in range(THREADS)]
        threads.append(threading.Thread(target=writer))
        for t in threads:
            t.start()
        time.sleep(DURATION)
        stop.set()
        for t in threads:
            t.join(60 * SLOW)
        self.assertFalse(any(t.is_alive() for t in threads), "a client thread hung")
        self.assertEqual(errors, [])
        for t in range(THREADS):
            self.assertGreater(counts[t], 3, "thread %d made %d requests" % (t, counts[t]))
        final = d.client.corrector()
        self.assertGreaterEqual(final["version"], 2, (final, writer_log))
        self.assertGreater(writer_log["accepted"] + final["refits"]["accepted"], 0)
        self.assertGreater(len(set().union(*seen)), 1, "no client saw a new version")
        self.assertEqual(final["pairs"]["total"], writer_log["updates"] * 60)
        self.assertGreater(final["refits"]["started"], writer_log["refits"] // 2)
        t0 = time.time()
        d.stop()
        self.assertLess(time.time() - t0, 5.0 * SLOW, "SIGTERM took too long")


if __name__ == "__main__":
    run()
