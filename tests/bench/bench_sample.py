"""Sampled hard negatives cost what a search of the same batch costs: in
the core (Gumbel-top-k with the log-sum-exp in the same pass against the
exact top-k, same matrix, same queries) and over HTTP (POST /v1/negatives
with method "sample" against POST /v1/search, same daemon).

    /usr/bin/python3 tests/bench/bench_sample.py [--toy]
"""

import argparse
import json
import subprocess
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


def engine(path, bs, reps):
    out = subprocess.run([benchlib.binary("bench_engine"), "--index", path, "--b",
                          ",".join(map(str, bs)), "--k", "16", "--reps", str(reps),
                          "--sample"], check=True, capture_output=True, text=True).stdout
    recs = [json.loads(l) for l in out.splitlines()]
    topk = {r["b"]: r["seconds"] for r in recs if r["what"] == "topk"}
    return [(r["b"], r["seconds"], topk[r["b"]]) for r in recs if r["what"] == "sample"]


def run(toy=False):
    n, d = (20000, 64) if toy else (200000, 768)
    path = benchlib.dataset(n, d)
    rows = []
    for b, g, s in engine(path, (1, 32, 256), 3 if toy else 7):
        rows.append(("core: sample vs top-k, N=%d d=%d B=%d, n=k=16" % (n, d, b),
                     "%.1f ms" % (g * 1e3), "%.1f ms" % (s * 1e3), "%.2fx" % (g / s),
                     "<= 1.15x", g / s <= 1.15))
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
