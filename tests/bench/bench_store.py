"""--store bf16 against --store f32 and FAISS IndexFlatIP, in one run:

  1. the engine's exact top-k (k = 10) at B = 1, 32, 256 over the same
     N x 768 index in each store, and FAISS on it (medians of --runs runs,
     each a median of --reps timings), with the load time, the peak
     resident set and the rows rescored a query;
  2. two daemons on that index, --store f32 and --store bf16: 1,000
     queries, stale and then corrected by the same affine corrector,
     answered bit for bit the same (ids, float32 scores, sampled
     negatives' logprobs);
  3. with --big N: one daemon on an N x 768 index in bf16 (sizes that do
     not fit in float32): time to listen vs reading the file once, resident
     set, search latency over HTTP, an affine refit on fresh embeddings of
     20,000 targets, and searches by the new corrector.

The index is clustered and unit-norm, like a real encoder's (1,000
centres, each row a centre plus noise): queries land among many close
rows, the hard case for a bound-and-rescore scan.

    /usr/bin/python3 tests/bench/bench_store.py                  # 2M x 768 (~15 min)
    /usr/bin/python3 tests/bench/bench_store.py --big 10000000   # and a 10M daemon
    /usr/bin/python3 tests/bench/bench_store.py --toy            # seconds: smoke test
    /usr/bin/python3 tests/bench/bench_store.py --curve 1e6,2e6,5e6,1e7  # only: bf16 at each N
    /usr/bin/python3 tests/bench/bench_store.py --mlp 0          # only: mlp at the largest N
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np

import benchlib
from bench_engine import faiss_times

HERE = os.path.dirname(os.path.abspath(__file__))


def clustered(n, d, seed=1):
    """Path of a cached N x d clustered unit-norm float32 .npy."""
    os.makedirs(benchlib.CACHE, exist_ok=True)
    path = os.path.join(benchlib.CACHE, "clustered-%d-%d-%d.npy" % (n, d, seed))
    if os.path.exists(path):
        return path
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.lib.format.open_memmap(path + ".tmp", mode="w+", dtype="<f4", shape=(n, d))
    for i in range(0, n, 131072):
        m = min(131072, n - i)
        rows = centres[rng.integers(0, 1000, m)]
        rows += (0.8 / np.sqrt(d)) * rng.standard_normal((m, d), dtype=np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        x[i:i + m] = rows
    x.flush()
    del x
    os.rename(path + ".tmp", path)
    return path


def near_queries(path, b, seed=2):
    """Queries near random rows of the index (their own cluster)."""
    x = np.load(path, mmap_mode="r")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(x), b, replace=False))
    q = np.array(x[rows]) + (0.5 / np.sqrt(x.shape[1])) * rng.standard_normal(
        (b, x.shape[1]), dtype=np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def engine(path, store, bs, reps):
    out = subprocess.run([benchlib.binary("bench_engine"), "--index", path, "--store", store,
                          "--b", ",".join(map(str, bs)), "--k", "10", "--reps", str(reps)],
                         check=True, capture_output=True, text=True).stdout
    recs = [json.loads(line) for line in out.splitlines()]
    load = next(r for r in recs if r["what"] == "load")
    top = {r["b"]: r for r in recs if r["what"] == "topk"}
    return load, top


def read_seconds(path):
    """One sequential read of the file (as the page cache has it now)."""
    t = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(64 << 20)
        while f.readinto(buf):
            pass
    return time.perf_counter() - t


def bits(reply, key):
    return [[(h["id"], struct.pack("<f", h["score"]),
              struct.pack("<f", h["logprob"]) if "logprob" in h else b"")
             for h in row] for row in reply[key]]


def fit_affine(client, path, n_targets, seed=5, batch=1000):
    """Fresh embeddings of n_targets rows under a hidden linear drift."""
    x = np.load(path, mmap_mode="r")
    d = x.shape[1]
    rng = np.random.default_rng(seed)
    M = (np.eye(d) + (0.15 / np.sqrt(d)) * rng.standard_normal((d, d))).astype(np.float32)
    ids = np.sort(rng.choice(len(x), n_targets, replace=False))
    for i in range(0, n_targets, batch):
        part = ids[i:i + batch]
        g = np.array(x[part]) @ M.T
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        client.update([int(t) for t in part], g.astype(np.float32))
    t = time.perf_counter()
    r = client.refit(wait=True)
    return r, time.perf_counter() - t


def rescored(d):
    """Rows the daemon has rescored in float32 since it started."""
    for line in d.client.metrics().splitlines():
        if line.startswith("freshd_rescored_rows_total "):
            return float(line.split()[1])
    return 0.0


def http_latency(client, q, b, reps, scoring):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        client.search(q[:b], k=10, scoring=scoring)
        ts.append(time.perf_counter() - t)
    return benchlib.median(ts)


def equality(path, nq, toy):
    """Two daemons, one per store: every answer the same bits."""
    q = near_queries(path, nq, seed=7)
    flags = ["--index", path, "--corrector", "affine", "--min-pairs", "64",
             "--refit-every-pairs", "0", "--refit-every-seconds", "0"]
    checked = 0
    with benchlib.Freshd(*flags, "--store", "f32") as a, \
            benchlib.Freshd(*flags, "--store", "bf16") as b:
        def compare(tag):
            nonlocal checked
            for i in range(0, nq, 100):
                qq = q[i:i + 100]
                for call, key in ((lambda c: c.search(qq, k=10, scoring="stale"), "results"),
                                  (lambda c: c.search(qq, k=10), "results"),
                                  (lambda c: c.negatives(qq, n=16, method="sample", seed=3,
                                                         temperature=0.05), "results")):
                    ra, rb = call(a.client), call(b.client)
                    if bits(ra, key) != bits(rb, key):
                        raise SystemExit("bf16 and f32 answers differ (%s, queries %d..)"
                                         % (tag, i))
                    checked += len(qq)
        compare("before a refit")
        r, _ = fit_affine(a.client, path, 2000 if toy else 20000)
        if not r.get("accepted"):
            raise SystemExit("the affine refit was not accepted: %r" % (r,))
        b.client.put_checkpoint(a.client.checkpoint())
        compare("corrected")
    return checked


def big_daemon(path, bs, reps, n_targets):
    rows = []
    n = np.load(path, mmap_mode="r").shape[0]
    read_s = read_seconds(path)
    flags = ["--index", path, "--store", "bf16", "--corrector", "affine", "--min-pairs", "64",
             "--refit-every-pairs", "0", "--refit-every-seconds", "0"]
    with benchlib.Freshd(*flags) as d:
        rows.append(("bf16 daemon N=%d: time to listen vs one read of the file" % n,
                     "%.1f s" % d.ready_seconds, "%.1f s" % read_s,
                     "%.2fx" % (d.ready_seconds / read_s), "", ""))
        info = d.client.info()
        rss = d.rss_bytes()
        rows.append(("bf16 daemon N=%d: resident set vs float32 rows alone" % n,
                     "%.2f GiB" % (rss / 2 ** 30), "%.2f GiB" % (n * 768 * 4 / 2 ** 30),
                     "%.2fx" % (rss / (n * 768 * 4)), "", ""))
        rows.append(("bf16 daemon: largest N by /v1/info (bf16 affine, bf16 mlp, f32 affine)",
                     "%d" % info["memory"]["largest_targets"]["bf16"]["affine"],
                     "%d, %d" % (info["memory"]["largest_targets"]["bf16"]["mlp"],
                                 info["memory"]["largest_targets"]["f32"]["affine"]), "", "", ""))
        q = near_queries(path, max(bs), seed=9)
        for b in bs:
            rows.append(("bf16 daemon N=%d B=%d search over HTTP (stale)" % (n, b),
                         "%.1f ms" % (1e3 * http_latency(d.client, q, b, reps, "stale")),
                         "", "", "", ""))
        r, secs = fit_affine(d.client, path, n_targets)
        rows.append(("bf16 daemon N=%d: affine refit on %d fresh targets" % (n, n_targets),
                     "%.1f s" % secs, "accepted" if r.get("accepted") else "REFUSED: %r" % (r,),
                     "", "", bool(r.get("accepted"))))
        for b in bs:
            rows.append(("bf16 daemon N=%d B=%d search over HTTP (corrected v%d)"
                         % (n, b, d.client.corrector()["version"]),
                         "%.1f ms" % (1e3 * http_latency(d.client, q, b, reps, "corrected")),
                         "", "", "", ""))
        rows.append(("bf16 daemon N=%d: resident set after refit and searches" % n,
                     "%.2f GiB" % (d.rss_bytes() / 2 ** 30), "", "", "", ""))
    return rows


def prefix(n, d=768, seed=1):
    """A clustered N x d index: the cached one of that size, or the first
    N rows of a larger cached one (written now; the caller deletes it)."""
    own = os.path.join(benchlib.CACHE, "clustered-%d-%d-%d.npy" % (n, d, seed))
    if os.path.exists(own):
        return own, False
    sizes = sorted(int(f.split("-")[1]) for f in os.listdir(benchlib.CACHE)
                   if f.startswith("clustered-") and f.endswith("-%d-%d.npy" % (d, seed)))
    bigger = [m for m in sizes if m > n]
    if not bigger:
        return clustered(n, d, seed), False
    src = np.load(os.path.join(benchlib.CACHE, "clustered-%d-%d-%d.npy" % (bigger[0], d, seed)),
                  mmap_mode="r")
    path = os.path.join(benchlib.CACHE, "prefix-%d-%d.npy" % (n, d))
    out = np.lib.format.open_memmap(path, mode="w+", dtype="<f4", shape=(n, d))
    for i in range(0, n, 262144):
        out[i:i + 262144] = src[i:min(n, i + 262144)]
    out.flush()
    del out
    return path, True


def curve(sizes, reps):
    """bf16 daemons at growing N: time to listen vs one read of the file,
    resident set, stale search latency over HTTP at B = 1 and 32."""
    rows = []
    for n in sizes:
        path, temp = prefix(n)
        try:
            read_s = read_seconds(path)
            with benchlib.Freshd("--index", path, "--store", "bf16", "--corrector", "none",
                                 "--refit-every-pairs", "0", "--refit-every-seconds", "0") as d:
                rss = d.rss_bytes()
                q = near_queries(path, 32, seed=9)
                lat = {b: http_latency(d.client, q, b, reps, "stale") for b in (1, 32)}
                rows.append(("bf16 curve N=%d: listen / read file, RSS, B=1 / B=32 over HTTP" % n,
                             "%.1f s / %.1f s" % (d.ready_seconds, read_s),
                             "%.2f GiB (%.2fx f32 rows)" % (rss / 2 ** 30, rss / (n * 768 * 4)),
                             "%.0f / %.0f ms" % (1e3 * lat[1], 1e3 * lat[32]), "", ""))
        finally:
            if temp:
                os.unlink(path)
    return rows


def mlp_daemon(n, bs, reps, n_targets, hidden):
    """A bf16 daemon with an MLP corrector at N (the largest /v1/info
    allows, when n is 0): listen, RSS, a refit that materializes h(S),
    corrected search latency, RSS after."""
    rows = []
    how = ""
    if not n:
        how = " (largest by /v1/info)"
        path, temp = prefix(2000000)
        with benchlib.Freshd("--index", path, "--store", "bf16", "--corrector", "mlp",
                             "--hidden", str(hidden)) as d:
            n = d.client.info()["memory"]["largest_targets"]["bf16"]["mlp"]
        n = n // 100000 * 100000
    path, temp = prefix(n)
    try:
        read_s = read_seconds(path)
        with benchlib.Freshd("--index", path, "--store", "bf16", "--corrector", "mlp",
                             "--hidden", str(hidden), "--min-pairs", "64",
                             "--refit-every-pairs", "0", "--refit-every-seconds", "0") as d:
            rows.append(("bf16 mlp daemon N=%d%s: listen vs read file" % (n, how),
                         "%.1f s" % d.ready_seconds, "%.1f s" % read_s, "", "", ""))
            rows.append(("bf16 mlp daemon N=%d: resident set before a refit" % n,
                         "%.2f GiB" % (d.rss_bytes() / 2 ** 30), "", "", "", ""))
            r, secs = fit_affine(d.client, path, n_targets)
            ok = bool(r.get("accepted"))
            rows.append(("bf16 mlp daemon N=%d: refit on %d targets (fit + h(S))" % (n, n_targets),
                         "%.1f s" % secs, "%s, %s" % ("accepted" if ok else "refused",
                                                      r.get("method") or r.get("reason")),
                         "", "", ok))
            q = near_queries(path, max(bs), seed=9)
            for b in bs:
                r0 = rescored(d)
                lat = http_latency(d.client, q, b, reps, "corrected")
                rows.append(("bf16 mlp daemon N=%d B=%d corrected search over HTTP" % (n, b),
                             "%.1f ms" % (1e3 * lat),
                             "%.0f rows rescored a query" % ((rescored(d) - r0) / (reps * b)),
                             "", "", ""))
            rows.append(("bf16 mlp daemon N=%d: resident set after" % n,
                         "%.2f GiB" % (d.rss_bytes() / 2 ** 30), "", "", "", ""))
    finally:
        if temp:
            os.unlink(path)
    return rows


def run(toy=False, runs=None, n=None, big=None, sizes=None, mlp=None, skip_main=False):
    if skip_main:
        rows = curve(sizes, 3) if sizes else []
        if mlp is not None:
            rows += mlp_daemon(mlp, [1, 32, 256], 3, 20000, 256)
        return rows
    n = n or (20000 if toy else 2000000)
    d = 64 if toy else 768
    runs = runs or (1 if toy else 3)
    reps = 3 if toy else 5
    bs = [1, 32, 256]
    path = clustered(n, d)
    rows = []
    t16, t32, tf, loads = {b: [] for b in bs}, {b: [] for b in bs}, {b: [] for b in bs}, {}
    rescored = {b: [] for b in bs}
    for i in range(runs):
        for store in (("f32", "bf16") if i % 2 == 0 else ("bf16", "f32")):
            load, top = engine(path, store, bs, reps)
            loads.setdefault(store, []).append(load)
            for b in bs:
                (t16 if store == "bf16" else t32)[b].append(top[b]["seconds"])
                if store == "bf16":
                    rescored[b].append(top[b]["rescored_per_query"])
        fa = faiss_times(path, bs, 10, reps)
        for b in bs:
            tf[b].append(fa[b])
    med = benchlib.median
    for b in bs:
        r16, r32, rf = med(t16[b]), med(t32[b]), med(tf[b])
        rows.append(("N=%d d=%d B=%d k=10: bf16 vs f32 scan" % (n, d, b),
                     "%.2f ms" % (r16 * 1e3), "%.2f ms" % (r32 * 1e3), "%.2fx" % (r16 / r32),
                     "<= 0.6x" if b <= 32 else "", (r16 / r32 <= 0.6) if b <= 32 else ""))
        rows.append(("N=%d d=%d B=%d k=10: bf16 vs FAISS IndexFlatIP" % (n, d, b),
                     "%.2f ms" % (r16 * 1e3), "%.2f ms" % (rf * 1e3), "%.2fx" % (rf / r16),
                     "", ""))
        rows.append(("N=%d B=%d: rows rescored in float32 a query" % (n, b),
                     "%.0f" % med(rescored[b]), "", "", "", ""))
    for store in ("f32", "bf16"):
        rows.append(("N=%d %s: load seconds, peak resident set" % (n, store),
                     "%.2f s" % med([x["seconds"] for x in loads[store]]),
                     "%.0f MiB" % med([x["peak_rss_mib"] for x in loads[store]]), "", "", ""))
    nq = 200 if toy else 1000
    checked = equality(path, nq, toy)
    rows.append(("HTTP answers bf16 == f32 bit for bit (stale, corrected, sampled)",
                 "%d queries" % nq, "%d compared" % checked, "", "all equal", True))
    if big:
        rows += big_daemon(clustered(big, d), bs, reps, 2000 if toy else 20000)
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--n", type=int)
    ap.add_argument("--big", type=int, help="also a bf16 daemon on a BIG x 768 index")
    ap.add_argument("--curve", help="only: bf16 daemons at these N (comma-separated)")
    ap.add_argument("--mlp", type=int, help="only: a bf16 daemon with an mlp corrector at "
                    "this N (0: the largest /v1/info allows)")
    ap.add_argument("--out", help="write the table as markdown here")
    a = ap.parse_args()
    sizes = [int(float(x)) for x in a.curve.split(",")] if a.curve else None
    rows = run(a.toy, a.runs, a.n, a.big, sizes, a.mlp,
               skip_main=sizes is not None or a.mlp is not None)
    lines = ["| figure | freshd | peer or bound | ratio | target | pass |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        verdict = "" if r[5] == "" else ("pass" if r[5] else "FAIL")
        lines.append("| %s | %s | %s | %s | %s | %s |" % (r[0], r[1], r[2], r[3], r[4], verdict))
    print("\n".join(lines))
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    sys.exit(1 if any(r[5] is False for r in rows) and not a.toy else 0)
