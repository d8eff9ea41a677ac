"""Sampled hard negatives cost what a search of the same batch costs:
POST /v1/negatives (method "sample", Gumbel-top-k with the log-sum-exp
in the same pass) against POST /v1/search, same queries, same daemon.

    /usr/bin/python3 tests/bench/bench_sample.py [--toy]
"""

import argparse
import time

import benchlib


def timed(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return benchlib.median(ts)


def run(toy=False):
    n, d = (20000, 64) if toy else (200000, 768)
    path = benchlib.dataset(n, d)
    rows = []
    with benchlib.Freshd("--index", path, "--corrector", "affine") as f:
        for b in (1, 32):
            q = benchlib.queries(b, d, seed=7)
            s = timed(lambda: f.client.search(q, k=16), 5)
            g = timed(lambda: f.client.negatives(q, n=16, method="sample", seed=1), 5)
            rows.append(("negatives: sample vs search, B=%d, n=k=16" % b, "%.1f ms" % (g * 1e3),
                         "%.1f ms" % (s * 1e3), "%.2fx" % (g / s), "<= 1.5x", g / s <= 1.5))
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true")
    a = ap.parse_args()
    for row in run(a.toy):
        print(" | ".join(str(c) for c in row))
