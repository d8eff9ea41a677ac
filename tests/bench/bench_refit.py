"""Refit beside serving: how fast the corrected matrix is rebuilt (against
the sgemm throughput P measured now), what it does to search latency, and
how fast an affine refit publishes.

    /usr/bin/python3 tests/bench/bench_refit.py [--toy]
"""

import argparse
import time

import numpy as np

import benchlib
from bench_http import search_body, wrk


def post_pairs(client, path, count, seed=4):
    """Fresh vectors with a drift a refit can learn (a smooth nonlinear
    field plus noise): a refit of pure noise is rightly refused, and then
    nothing is materialized."""
    x = np.load(path, mmap_mode="r")
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    m = rng.standard_normal((d, d), dtype=np.float32) / np.sqrt(d)
    ids = np.sort(rng.choice(len(x), count, replace=False))
    for i in range(0, count, 512):
        chunk = ids[i:i + 512]
        s = np.asarray(x[chunk])
        g = s + 0.5 * np.tanh(s @ m) + 0.05 * rng.standard_normal(s.shape, dtype=np.float32)
        client.update(chunk, g.astype(np.float32))
    return ids


def wait_materializing(client, finished_before, timeout=3600):
    """Until the refit materializes (or, at toy sizes, has already finished)."""
    t = time.time()
    while time.time() - t < timeout:
        c = client.corrector()
        done = c["refits"]["accepted"] + c["refits"]["rejected"] + c["refits"]["failed"]
        if c["state"] == "materializing" or done > finished_before:
            return c
        time.sleep(0.02)
    raise RuntimeError("the refit never reached materializing")


def run(toy=False):
    n, d = (20000, 64) if toy else (1000000, 768)
    pairs = 2000 if toy else 20000
    path = benchlib.dataset(n, d)
    bw, p = benchlib.machine_limits(path, 3)
    body = search_body(d)
    rows = []
    with benchlib.Freshd("--index", path, "--corrector", "mlp", "--hidden", str(d),
                         "--refit-every-pairs", "0", "--refit-every-seconds", "0",
                         "--refit-epochs", "2") as f:
        post_pairs(f.client, path, pairs)
        idle = wrk(f.url, 8, 2, 2 if toy else 6, body)
        f.client.refit()
        wait_materializing(f.client, 0)
        during = wrk(f.url, 8, 2, 1 if toy else 6, body)
        while f.client.corrector()["state"] != "idle":
            time.sleep(0.1)
        last = f.client.corrector()["last_refit"]
    if not last["accepted"]:
        raise RuntimeError("the timed refit was not accepted: %s" % last["reason"])
    mat = last["timings_ms"]["materialize"] / 1e3
    flops = 2.0 * n * (d * d + 2 * d * d)  # A, W1 and W2, each d x d
    rate = flops / mat
    rows.append(("refit: materialize N=%d d=H=%d (%d pairs)" % (n, d, pairs),
                 "%.2f s, %.0f GFLOP/s" % (mat, rate / 1e9), "sgemm %.0f GFLOP/s" % (p / 1e9),
                 "%.2f" % (rate / p), ">= 0.60", rate / p >= 0.6 and last["accepted"]))
    rows.append(("refit: search p99 during materialization vs idle",
                 "%.1f ms" % (during["p99"] * 1e3), "%.1f ms" % (idle["p99"] * 1e3),
                 "%.2fx" % (during["p99"] / idle["p99"]), "<= 3x",
                 during["p99"] / idle["p99"] <= 3 and during["non2xx"] == 0))
    with benchlib.Freshd("--index", path, "--corrector", "affine", "--refit-every-pairs", "0",
                         "--refit-every-seconds", "0") as f:
        post_pairs(f.client, path, pairs)
        out = f.client.refit(wait=True)
    pub = out["timings_ms"]["materialize"] + out["timings_ms"]["publish"]
    rows.append(("refit: affine N=%d, materialize + publish" % n, "%.1f ms" % pub,
                 "train %.0f ms" % out["timings_ms"]["train"], "", "<= 50 ms",
                 pub <= 50 and out["accepted"]))
    rows += rows_only(path, n, d, pairs, bw, toy)
    rows += rows_only(path, n, d, pairs, bw, toy, aged=True)
    return rows


def rows_only(path, n, d, pairs, bw, toy, aged=False):
    """A training loop's rows-only publish (--serve-fresh-rows): after each
    step's update of `step` candidates, POST /v1/refit?rows_only=true. Its
    floor is copying the corrected matrix C once (read and write, 8 N d
    bytes at the read bandwidth bw) plus the checkpoint of the rows.
    aged (--age-fresh-rows): most of each step's candidates re-encode
    targets already served (as a training loop's hard negatives recur;
    the 2 (d + 1) a fit needs, at least half), so that every publish fits
    the map and moves every other served row."""
    step = 256 if toy else 2048
    x = np.load(path, mmap_mode="r")
    rng = np.random.default_rng(9)
    times, build, publish, fitted = [], [], [], 0
    with benchlib.Freshd("--index", path, "--corrector", "mlp", "--hidden", str(d),
                         "--serve-fresh-rows", "--refit-every-pairs", "0",
                         "--refit-every-seconds", "0", "--refit-epochs", "2",
                         *(["--age-fresh-rows"] if aged else [])) as f:
        sent = post_pairs(f.client, path, pairs)
        first = f.client.refit(wait=True)
        if not first["accepted"]:
            raise RuntimeError("the first refit was not accepted: %s" % first["reason"])
        for _ in range(3 if toy else 7):
            if aged:
                again = rng.choice(sent, min(step, max(step // 2, 2 * (d + 1) + 16)),
                                   replace=False)
                new = np.setdiff1d(rng.choice(n, step, replace=False), sent)[:step - len(again)]
                ids = np.sort(np.concatenate([again, new]))
                sent = np.union1d(sent, ids)
            else:
                ids = np.sort(rng.choice(n, step, replace=False))
            g = np.asarray(x[ids]) + 0.1 * rng.standard_normal((step, d), dtype=np.float32)
            f.client.update(ids, g.astype(np.float32))
            t = time.perf_counter()
            out = f.client.refit(wait=True, rows_only=True)
            times.append(time.perf_counter() - t)
            if not out["accepted"]:
                raise RuntimeError("a rows-only publish was refused: %s" % out["reason"])
            build.append(out["timings_ms"]["materialize"])
            publish.append(out["timings_ms"]["publish"])
            fitted += bool(out.get("rows_aged", {}).get("fitted"))
        served = f.client.corrector()["fresh_rows"]
    med = float(np.median(times))
    floor = 8.0 * n * d / bw
    return [("refit: rows-only publish N=%d d=%d, %d rows served, %d new a step%s"
             % (n, d, served, step, ", aged (%d re-encoded)" % len(again) if aged else ""),
             "%.0f ms (build %.0f, publish %.0f)" % (med * 1e3, np.median(build), np.median(publish)),
             "copy of C %.0f ms" % (floor * 1e3), "%.2fx" % (med / floor),
             "every publish fitted" if aged else "report",
             fitted == len(times) if aged else True)]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true")
    a = ap.parse_args()
    for row in run(a.toy):
        print(" | ".join(str(c) for c in row))
