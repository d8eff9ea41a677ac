"""Ingest: fresh pairs (d = 768) accepted durably over HTTP by several
concurrent clients, base64 and JSON arrays, under --sync always (fsync
before every acknowledgement, group commit) and --sync interval=100.

    /usr/bin/python3 tests/bench/bench_ingest.py [--toy] [--seconds S]
"""

import argparse
import base64
import http.client
import json
import multiprocessing as mp
import time

import numpy as np

import benchlib

BATCH = 256


def bodies(n, d, proc, b64, count=8):
    rng = np.random.default_rng(100 + proc)
    out = []
    for _ in range(count):
        ids = rng.choice(n, BATCH, replace=False)
        v = rng.standard_normal((BATCH, d), dtype=np.float32)
        if b64:
            t = [{"id": int(i), "vector_b64": base64.b64encode(x.tobytes()).decode()}
                 for i, x in zip(ids, v)]
        else:
            t = [{"id": int(i), "vector": [float(f) for f in x]} for i, x in zip(ids, v)]
        out.append(json.dumps({"targets": t}).encode())
    return out


def client(args):
    port, seconds, payloads = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    sent, i, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        conn.request("POST", "/v1/updates", payloads[i % len(payloads)],
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status != 202:
            raise RuntimeError("update answered %d" % r.status)
        sent += BATCH
        i += 1
    return sent, time.perf_counter() - t0


def ingest(path, n, d, b64, sync, procs, seconds):
    payloads = [bodies(n, d, p, b64) for p in range(procs)]
    with benchlib.Freshd("--index", path, "--corrector", "affine", "--sync", sync,
                         "--refit-every-pairs", "0", "--refit-every-seconds", "0") as f:
        with mp.Pool(procs) as pool:
            res = pool.map(client, [(f.port, seconds, payloads[p]) for p in range(procs)])
        total = f.client.corrector()["pairs"]["total"]
    pairs = sum(r[0] for r in res)
    if total != pairs:
        raise RuntimeError("acknowledged %d pairs, the daemon counts %d" % (pairs, total))
    return pairs / max(r[1] for r in res)


def run(toy=False, seconds=None):
    n, d = (20000, 768) if toy else (200000, 768)
    seconds = seconds or (1 if toy else 8)
    path = benchlib.dataset(n, d)
    rows = []
    rates = {}
    for b64 in (True, False):
        for sync in ("always", "interval=100"):
            rates[(b64, sync)] = ingest(path, n, d, b64, sync, 4, seconds)
    for b64, target in ((True, 20000), (False, 5000)):
        name = "base64" if b64 else "JSON arrays"
        a, i = rates[(b64, "always")], rates[(b64, "interval=100")]
        rows.append(("ingest d=768, %s, 4 clients, --sync always" % name, "%.0f pairs/s" % a,
                     "interval=100: %.0f pairs/s" % i, "%.2f" % (a / i), ">= %d/s" % target,
                     a >= target))
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true")
    ap.add_argument("--seconds", type=int)
    a = ap.parse_args()
    for row in run(a.toy, a.seconds):
        print(" | ".join(str(c) for c in row))
