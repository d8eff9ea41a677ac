"""Batch invariance over HTTP: with a random float index (d not a multiple
of 16) and a fitted corrector, every query gets bitwise the same ids and
scores alone, in requests of many sizes at every position, and from many
concurrent clients whose queries the dispatcher coalesces into batches it
chooses; seeded negatives (sampled, with logprobs) are the same alone and
under concurrent load. Stale and corrected scoring, affine and mlp."""

import shutil
import tempfile
import threading

import numpy as np

from harness import run
from freshd_client import Client  # noqa: E402 (harness puts it on the path)
from support import ApiCase, save_index

N, D, NQ, K = 4000, 100, 24, 10


def key(result):
    return [(h["id"], h["score"], h.get("logprob")) for h in result]


class Invariance(ApiCase):
    def daemon(self, kind):
        tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, tmp, True)
        rng = np.random.default_rng(91)
        X = rng.standard_normal((N, D)).astype(np.float32)
        ip, jp = save_index(tmp, X, np.arange(N, dtype=np.uint64) * 3 + 5)
        args = ["--index", ip, "--ids", jp, "--corrector", kind, "--min-pairs", "64",
                "--refit-every-pairs", "0", "--refit-every-seconds", "0"]
        if kind == "mlp":
            args += ["--hidden", "32"]
        d = self.start(*args)
        M = rng.standard_normal((D, D)).astype(np.float32) / np.sqrt(D)
        F = X + 0.3 * np.tanh(X @ M)
        rows = rng.choice(N, 1200, replace=False)
        d.client.update([int(r) * 3 + 5 for r in rows], F[rows], step=1)
        self.assertTrue(d.client.refit(wait=True)["accepted"])
        return d, rng.standard_normal((NQ, D)).astype(np.float32)

    def check(self, kind):
        d, Q = self.daemon(kind)
        c = d.client
        for scoring in ("stale", "corrected"):
            alone = [key(c.search(Q[i], k=K, scoring=scoring)["results"][0]) for i in range(NQ)]
            for b in (2, 3, 5, 8, 13, 17, 24):
                for rot in range(0, b, max(1, b // 6)):
                    order = [(rot + i) % NQ for i in range(b)]
                    out = c.search(Q[order], k=K, scoring=scoring)["results"]
                    for pos, i in enumerate(order):
                        self.assertEqual(key(out[pos]), alone[i],
                                         "%s %s: query %d at %d of %d" % (kind, scoring, i, pos, b))
            # Concurrent single queries and small requests: batches of the
            # dispatcher's choosing.
            errors = []

            def client(t):
                cc = Client(d.url)
                try:
                    for rep in range(12):
                        i = (t * 5 + rep) % NQ
                        if rep % 2:
                            got = [key(cc.search(Q[i], k=K, scoring=scoring)["results"][0])]
                            want = [alone[i]]
                        else:
                            j = (i + 1) % NQ
                            got = [key(r) for r in
                                   cc.search(Q[[i, j]], k=K, scoring=scoring)["results"]]
                            want = [alone[i], alone[j]]
                        if got != want:
                            errors.append("thread %d query %d" % (t, i))
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(repr(e))
                finally:
                    cc.close()

            ts = [threading.Thread(target=client, args=(t,)) for t in range(8)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertEqual(errors, [], "%s %s" % (kind, scoring))
        # Seeded samples: the same request alone and under concurrent load.
        req = dict(n=12, method="sample", temperature=0.5, seed=1234)
        want = [key(r) for r in c.negatives(Q[:6], **req)["results"]]
        errors = []

        def sampler(t):
            cc = Client(d.url)
            try:
                for _ in range(6):
                    if t % 2:
                        cc.search(Q[t % NQ], k=K)
                    elif [key(r) for r in cc.negatives(Q[:6], **req)["results"]] != want:
                        errors.append("thread %d" % t)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
            finally:
                cc.close()

        ts = [threading.Thread(target=sampler, args=(t,)) for t in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errors, [], kind)
        self.assertTrue(all(h[2] is not None for r in want for h in r))
        self.assertEqual([len(r) for r in want], [12] * 6)

    def test_affine(self):
        self.check("affine")

    def test_mlp(self):
        self.check("mlp")


if __name__ == "__main__":
    run()
