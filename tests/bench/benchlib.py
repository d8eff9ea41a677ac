"""Shared pieces of freshd's benchmarks: seeded data cached on disk, the
daemon started and stopped as a user would, medians, the machine's limits.

Every benchmark compares in one run: a figure for freshd next to its peer
(FAISS IndexFlatIP) or its bound (the roofline max(4Nd/BW, 2BNd/P), with
the read bandwidth BW and the OpenBLAS sgemm throughput P measured in the
same run).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
import freshd_daemon  # noqa: E402

CACHE = os.environ.get("FRESHD_BENCH_CACHE", os.path.join(tempfile.gettempdir(), "freshd-bench-cache"))


def build_dir():
    return os.environ.get("FRESHD_BUILD", os.path.join(ROOT, "build"))


def binary(name):
    paths = {"freshd": "server/freshd", "bench_engine": "tests/bench/bench_engine"}
    path = os.path.join(build_dir(), paths[name])
    if not os.path.exists(path):
        raise SystemExit("missing %s: build first (meson setup build && ninja -C build)" % path)
    return path


def median(xs):
    return statistics.median(xs)


def dataset(n, d, seed=1, kind="normal"):
    """Path of an N x d float32 .npy (cached), standard normal rows."""
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, "%s-%d-%d-%d.npy" % (kind, n, d, seed))
    if not os.path.exists(path):
        rng = np.random.default_rng(seed)
        x = np.lib.format.open_memmap(path + ".tmp", mode="w+", dtype="<f4", shape=(n, d))
        for i in range(0, n, 65536):
            m = min(65536, n - i)
            x[i:i + m] = rng.standard_normal((m, d), dtype=np.float32)
        x.flush()
        del x
        os.rename(path + ".tmp", path)
    return path


def queries(b, d, seed=2):
    return np.random.default_rng(seed).standard_normal((b, d), dtype=np.float32)


class Freshd(freshd_daemon.Daemon):
    """freshd on a free loopback port (the shared helper), stopped with
    SIGTERM: waits up to an hour for a large index to load; ready_seconds
    is the time to its listening line."""

    def __init__(self, *args, data_dir=None, env=None):
        super().__init__(*args, binary=binary("freshd"), data_dir=data_dir, env=env,
                         ready=None, timeout=3600.0, client_timeout=3600.0)
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self):
        code, log = super().stop(timeout=120.0)
        if code not in (None, 0):  # a benchmark reports it, and stops the others
            print("freshd exited %d:\n%s" % (code, log[-2000:]), file=sys.stderr)
        else:
            self.remove_log()


def machine_limits(path, reps=5):
    """Read bandwidth (bytes/s, 2 threads) and OpenBLAS sgemm (flop/s at
    the scoring shape B=1024, 2 threads), both measured now."""
    out = subprocess.run([binary("bench_engine"), "--index", path, "--b", "1", "--reps", str(reps)],
                         check=True, capture_output=True, text=True).stdout
    bw = None
    for line in out.splitlines():
        rec = json.loads(line)
        if rec["what"] == "machine":
            bw = rec["read_gbs"] * 1e9
    code = r'''
import numpy as np, time, sys, statistics
x = np.load(sys.argv[1], mmap_mode="r")
x = np.ascontiguousarray(x[:min(len(x), 131072)])
q = np.random.default_rng(3).standard_normal((1024, x.shape[1]), dtype=np.float32)
ts = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); q @ x.T; ts.append(time.perf_counter() - t)
print(2.0 * q.shape[0] * x.shape[0] * x.shape[1] / statistics.median(ts))
'''
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
    p = float(subprocess.run([sys.executable, "-c", code, path, str(reps)], check=True,
                             capture_output=True, text=True, env=env).stdout)
    return bw, p


def roofline(n, d, b, bw, p):
    return max(4.0 * n * d / bw, 2.0 * b * n * d / p)
