"""Engine, batched: freshd's core exact top-k against FAISS IndexFlatIP and
against the roofline, same data, same k, in one run.

    /usr/bin/python3 tests/bench/bench_engine.py [--toy] [--reps R]

FAISS runs as DESIGN.md says is fair: Debian's python3-faiss with
OPENBLAS_NUM_THREADS=2, OMP_WAIT_POLICY=PASSIVE and
distance_compute_blas_threshold = 1 (its BLAS path for every batch size).
"""

import argparse
import json
import os
import subprocess
import sys

import benchlib

FAISS = r'''
import json, statistics, sys, time
import numpy as np
import faiss
faiss.cvar.distance_compute_blas_threshold = 1
faiss.omp_set_num_threads(2)
path, bs, k, reps = sys.argv[1], [int(b) for b in sys.argv[2].split(",")], int(sys.argv[3]), int(sys.argv[4])
x = np.load(path)
index = faiss.IndexFlatIP(x.shape[1])
index.add(x)
rng = np.random.default_rng(2)
for b in bs:
    q = rng.standard_normal((b, x.shape[1]), dtype=np.float32)
    index.search(q, k)
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); index.search(q, k); ts.append(time.perf_counter() - t)
    print(json.dumps({"b": b, "seconds": statistics.median(ts)}), flush=True)
'''


def freshd_times(path, bs, k, reps):
    out = subprocess.run([benchlib.binary("bench_engine"), "--index", path, "--b",
                          ",".join(map(str, bs)), "--k", str(k), "--reps", str(reps)],
                         check=True, capture_output=True, text=True).stdout
    recs = [json.loads(l) for l in out.splitlines()]
    return {r["b"]: r["seconds"] for r in recs if r["what"] == "topk"}


def faiss_times(path, bs, k, reps):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2",
               OMP_WAIT_POLICY="PASSIVE")
    out = subprocess.run([sys.executable, "-c", FAISS, path, ",".join(map(str, bs)), str(k),
                          str(reps)], check=True, capture_output=True, text=True, env=env).stdout
    return {r["b"]: r["seconds"] for r in map(json.loads, out.splitlines())}


def run(toy=False, reps=None):
    """Rows: (figure, freshd, peer or bound, ratio, target, pass)."""
    sizes = [(5000, 64)] if toy else [(200000, 768), (1000000, 768)]
    bs = [1, 8, 32] if toy else [1, 8, 32, 256, 1024]
    reps = reps or (3 if toy else 5)
    rows = []
    for n, d in sizes:
        path = benchlib.dataset(n, d)
        bw, p = benchlib.machine_limits(path, reps)
        rows.append(("machine (N=%d): read BW, sgemm P" % n, "%.1f GB/s" % (bw / 1e9),
                     "%.0f GFLOP/s" % (p / 1e9), "", "", ""))
        ours = freshd_times(path, bs, 10, reps)
        theirs = faiss_times(path, bs, 10, reps)
        for b in bs:
            bound = benchlib.roofline(n, d, b, bw, p)
            speed = theirs[b] / ours[b]
            rows.append(("engine N=%d d=%d B=%d k=10 vs FAISS" % (n, d, b),
                         "%.2f ms" % (ours[b] * 1e3), "%.2f ms" % (theirs[b] * 1e3),
                         "%.2fx" % speed, ">= 1x", speed >= 1.0))
            rows.append(("engine N=%d d=%d B=%d vs roofline" % (n, d, b),
                         "%.2f ms" % (ours[b] * 1e3), "%.2f ms" % (bound * 1e3),
                         "%.2fx" % (ours[b] / bound), "<= 1.25x", ours[b] / bound <= 1.25))
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true")
    ap.add_argument("--reps", type=int)
    a = ap.parse_args()
    for row in run(a.toy, a.reps):
        print(" | ".join(str(c) for c in row))
