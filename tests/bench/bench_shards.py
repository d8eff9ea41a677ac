"""A coordinator over three shards against one daemon over the whole index,
on this machine: are the answers the same bits (1,000 queries: search,
top-k and sampled negatives), and what do throughput and p99 latency cost
(one client, and 16 concurrent ones, through wrk)? And how long do
searches wait while the coordinator installs a new MLP corrector (each
shard builds h(S) of its rows, then all switch at once)?

    /usr/bin/python3 tests/bench/bench_shards.py [--toy] [--n N] [--d D]

All four processes share this machine's cores, so the figures measure the
coordinator's overhead (a fan-out over loopback HTTP and a merge), not
the scale-out: shards exist to hold indexes one machine cannot, on
machines of their own.
"""

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

import benchlib
from bench_http import search_body, wrk

HERE = os.path.dirname(os.path.abspath(__file__))
SPLIT = os.path.join(HERE, "..", "..", "clients", "python", "examples", "split_index.py")
COMMON = ("--corrector", "affine", "--refit-every-pairs", "0", "--refit-every-seconds", "0")


def bits(reply, logprob):
    out = []
    for row in reply["results"]:
        out.append([(h["id"], struct.pack("<f", h["score"])) for h in row])
    lp = [[h["logprob"] for h in row] for row in reply["results"]] if logprob else None
    return out, lp


def compare(whole, coord, d, count, rng):
    """(identical answers, answers, logprobs bitwise equal, logprobs, the
    largest difference of a logprob). Logprobs can differ in the last
    bits: log Z sums exp(score / T - m) with m each process's own maximum,
    so the rounding of its terms depends on where the index was cut."""
    same = total = lp_same = lp_total = 0
    worst = 0.0
    for start in range(0, count, 100):
        b = min(100, count - start)
        Q = rng.standard_normal((b, d), dtype=np.float32)
        for call in (lambda c: c.search(Q, k=10),
                     lambda c: c.search(Q, k=10, scoring="stale"),
                     lambda c: c.negatives(Q, n=16, method="topk"),
                     lambda c: c.negatives(Q, n=16, method="sample", seed=start + 1,
                                           temperature=0.5)):
            a, c = call(whole.client), call(coord.client)
            ha, la = bits(a, "logprob" in a["results"][0][0])
            hc, lc = bits(c, la is not None)
            for ra, rc in zip(ha, hc):
                same += ra == rc
                total += 1
            if la is not None:
                for ra, rc in zip(la, lc):
                    for x, y in zip(ra, rc):
                        lp_total += 1
                        lp_same += struct.pack("<f", x) == struct.pack("<f", y)
                        worst = max(worst, abs(x - y))
    return same, total, lp_same, lp_total, worst


def cluster(tmp, flags, procs):
    """A shard daemon on each of the three parts in tmp (with flags) and a
    coordinator over them, appended to procs; the coordinator once ready."""
    shards = []
    for s in range(3):
        p = os.path.join(tmp, "part-%d" % s)
        shards.append(benchlib.Freshd("--shard", "--index", p + ".npy", "--ids",
                                      p + "_ids.npy", *flags))
        procs.append(shards[-1])
    coord = benchlib.Freshd("--shards", ",".join(x.url for x in shards))
    procs.append(coord)
    for _ in range(600):
        try:
            coord.client.readyz()
            break
        except Exception:
            time.sleep(0.1)
    return coord


def run(toy=False, n=None, d=None, seconds=None):
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: bash .ci/setup installs it")
    n = n or (30000 if toy else 1000000)
    d = d or (64 if toy else 768)
    count = 200 if toy else 1000
    seconds = seconds or (2 if toy else 10)
    path = benchlib.dataset(n, d)
    tmp = tempfile.mkdtemp(prefix="freshd-bench-shards-")
    rows = []
    procs = []
    try:
        subprocess.run([sys.executable, SPLIT, "--parts", "3", path, tmp], check=True,
                       capture_output=True)
        whole = benchlib.Freshd("--index", path, *COMMON)
        procs.append(whole)
        coord = cluster(tmp, ("--threads", "1") + COMMON, procs)
        rng = np.random.default_rng(3)
        same, total, lp_same, lp_total, worst = compare(whole, coord, d, count, rng)
        rows.append(("shards: answers equal one daemon's (%d queries x 4 calls)" % count,
                     "%d/%d identical" % (same, total), "", "", "all", same == total))
        rows.append(("shards: logprobs bitwise equal", "%d/%d" % (lp_same, lp_total),
                     "largest difference %.1e" % worst, "", "<= 1e-6", worst <= 1e-6))
        body = search_body(d)
        figures = {}
        for name, f in (("one daemon", whole), ("coordinator", coord)):
            wrk(f.url, 2, 1, 1, body)  # warm up
            figures[name] = (wrk(f.url, 1, 1, seconds, body), wrk(f.url, 16, 2, seconds, body))
        for i, label in ((0, "1 client"), (1, "16 clients")):
            c, w = figures["coordinator"][i], figures["one daemon"][i]
            ok = c["non2xx"] == 0 and w["non2xx"] == 0
            rows.append(("shards N=%d d=%d, %s: throughput" % (n, d, label),
                         "%.0f q/s" % c["rps"], "%.0f q/s one daemon" % w["rps"],
                         "%.2fx" % (c["rps"] / w["rps"]), "", ok))
            rows.append(("shards, %s: p50 / p99" % label,
                         "%.1f / %.1f ms" % (c["p50"] * 1e3, c["p99"] * 1e3),
                         "%.1f / %.1f ms one daemon" % (w["p50"] * 1e3, w["p99"] * 1e3),
                         "", "", ok))
        rows.append(("shards: RSS of the coordinator", "%.1f MiB" % (coord.rss_bytes() / 2**20),
                     "%.1f MiB one daemon" % (whole.rss_bytes() / 2**20), "", "", ""))
        for p in reversed(procs):
            p.stop()
        procs = []
        rows += install_wait(path, tmp, n, d, 32 if toy else 256)
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def install_wait(path, tmp, n, d, hidden, seconds_before=1.0):
    """Three MLP shards and a coordinator; one client searches (B = 1)
    without pause while the coordinator refits and installs: the install's
    time (every shard builds h(S), then all commit) against the longest
    and the p99 search latency during it, and the failed searches."""
    mlp = ("--corrector", "mlp", "--hidden", str(hidden), "--min-pairs", "64",
           "--refit-every-pairs", "0", "--refit-every-seconds", "0")
    procs = []
    try:
        coord = cluster(tmp, mlp, procs)
        X = np.load(path, mmap_mode="r")
        rng = np.random.default_rng(11)
        rows = np.sort(rng.choice(n, size=min(n, 4000), replace=False))
        M = (np.eye(d) + 0.2 / np.sqrt(d) * rng.standard_normal((d, d))).astype(np.float32)
        G = (np.asarray(X[rows]) @ M.T).astype(np.float32)
        for i in range(0, len(rows), 1000):
            coord.client.update([int(r) for r in rows[i:i + 1000]], G[i:i + 1000])
        q = rng.standard_normal((1, d)).astype(np.float32)
        lat, fails, stop = [], [0], threading.Event()

        def searcher():
            client = coord.client  # thread-safe: a connection per thread
            while not stop.is_set():
                t = time.monotonic()
                try:
                    client.search(q, k=10)
                except Exception:
                    fails[0] += 1
                lat.append((t, time.monotonic() - t))

        th = threading.Thread(target=searcher)
        th.start()
        time.sleep(seconds_before)  # a baseline before the refit
        t0 = time.monotonic()
        r = coord.client.refit(wait=True)
        t1 = time.monotonic()
        stop.set()
        th.join()
        during = sorted(x for t, x in lat if t0 <= t <= t1)
        base = sorted(x for t, x in lat if t < t0)
        ok = bool(r.get("accepted")) and fails[0] == 0
        pub = (r.get("timings_ms") or {}).get("publish")
        return [
            ("shards mlp N=%d d=%d hidden=%d: refit through the coordinator" % (n, d, hidden),
             "%.1f s" % (t1 - t0),
             "install (stage + commit) %s" % ("%.1f s" % (pub / 1e3) if pub is not None else "n/a"),
             "", "accepted", bool(r.get("accepted"))),
            ("shards mlp: searches during the refit: count, longest, p99",
             "%d, %.0f ms, %.0f ms" % (len(during), 1e3 * during[-1] if during else 0,
                                       1e3 * during[int(0.99 * (len(during) - 1))] if during else 0),
             "before: p50 %.0f ms" % (1e3 * base[len(base) // 2] if base else 0),
             "", "no failures", ok),
        ]
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true")
    ap.add_argument("--n", type=int)
    ap.add_argument("--d", type=int)
    ap.add_argument("--seconds", type=int)
    a = ap.parse_args()
    for row in run(a.toy, a.n, a.d, a.seconds):
        print(" | ".join(str(c) for c in row))
