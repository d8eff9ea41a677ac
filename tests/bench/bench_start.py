"""Start and memory: time to ready on an N x d .npy against reading the
file from the page cache (plus materializing, for mlp), and resident
memory against the size of the embeddings.

    /usr/bin/python3 tests/bench/bench_start.py [--toy]
"""

import argparse
import time

import benchlib
from bench_refit import post_pairs


# Starts a configuration is timed over (median): the first touch of fresh
# memory costs very different amounts from one start to the next on a VM.
STARTS = 3


def read_seconds(path, reps=3):
    ts = []
    for _ in range(reps + 1):
        t = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            while f.read(8 << 20):
                pass
        ts.append(time.perf_counter() - t)
    return benchlib.median(ts[1:])


def run(toy=False):
    n, d = (20000, 64) if toy else (1000000, 768)
    path = benchlib.dataset(n, d)
    read = read_seconds(path)
    emb = n * d * 4
    rows = []
    for kind in ("none", "affine"):
        readies = []
        for _ in range(STARTS):
            with benchlib.Freshd("--index", path, "--corrector", kind) as f:
                f.client.search(benchlib.queries(1, d)[0], k=10)
                rss = f.rss_bytes()
                readies.append(f.ready_seconds)
        ready = benchlib.median(readies)
        limit = 1.05 * emb + 64e6
        rows.append(("start %s N=%d d=%d: ready vs reading the file" % (kind, n, d),
                     "%.2f s" % ready, "%.2f s" % read, "%.2fx" % (ready / read), "<= 2x",
                     ready <= 2 * read))
        rows.append(("memory %s: RSS vs 1.05 Nd4 + 64 MB" % kind, "%.0f MB" % (rss / 1e6),
                     "%.0f MB" % (limit / 1e6), "%.2f" % (rss / limit), "<= 1", rss <= limit))
    # mlp: a data dir with a published (non-identity) corrector, restarted.
    with benchlib.Freshd("--index", path, "--corrector", "mlp", "--hidden", str(d),
                         "--refit-epochs", "1", "--refit-every-pairs", "0",
                         "--refit-every-seconds", "0") as f:
        post_pairs(f.client, path, 2000)
        out = f.client.refit(wait=True)
        data = f.data_dir
    mat = out["timings_ms"]["materialize"] / 1e3
    if not out["accepted"]:
        raise RuntimeError("the refit was not accepted: %s" % out["reason"])
    readies = []
    for _ in range(STARTS):
        with benchlib.Freshd("--index", path, "--corrector", "mlp", "--hidden", str(d),
                             data_dir=data) as f:
            f.client.search(benchlib.queries(1, d)[0], k=10)
            rss = f.rss_bytes()
            readies.append(f.ready_seconds)
    ready = benchlib.median(readies)
    limit = 2.1 * emb + 64e6
    rows.append(("start mlp (published corrector): ready vs read + materialize",
                 "%.2f s" % ready, "%.2f s" % (read + mat), "%.2fx" % (ready / (read + mat)),
                 "<= 2x", ready <= 2 * (read + mat)))
    rows.append(("memory mlp: RSS vs 2.1 Nd4 + 64 MB", "%.0f MB" % (rss / 1e6),
                 "%.0f MB" % (limit / 1e6), "%.2f" % (rss / limit), "<= 1", rss <= limit))
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true")
    a = ap.parse_args()
    for row in run(a.toy):
        print(" | ".join(str(c) for c in row))
