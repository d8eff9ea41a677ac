"""Shared pieces of freshd's benchmarks: seeded data cached on disk, the
daemon started and stopped as a user would, medians, the machine's limits.

Every benchmark compares in one run: a figure for freshd next to its peer
(FAISS IndexFlatIP) or its bound (the roofline max(4Nd/BW, 2BNd/P), with
the read bandwidth BW and the OpenBLAS sgemm throughput P measured in the
same run).
"""

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

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


class Freshd:
    """freshd on a free loopback port, stopped with SIGTERM."""

    def __init__(self, *args, data_dir=None, env=None):
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="freshd-bench-")
        cmd = [binary("freshd"), "--listen", "127.0.0.1:0", "--data-dir", self.data_dir] + list(args)
        self.t0 = time.perf_counter()
        self.stderr = open(os.path.join(self.data_dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr,
                                     env=dict(os.environ, **(env or {})))
        line = self.proc.stdout.readline().decode().strip()
        self.ready_seconds = time.perf_counter() - self.t0
        m = re.match(r"freshd: listening on (http://\S+)$", line)
        if not m:
            self.proc.wait()
            raise RuntimeError("freshd did not start: %r (see %s)" % (line, self.stderr.name))
        self.url = m.group(1)
        self.port = int(self.url.rsplit(":", 1)[1])
        from freshd_client import Client
        self.client = Client(self.url, timeout=3600)

    def rss_bytes(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def metric(self, name):
        """Sum of a metric's samples in /metrics (all label sets)."""
        total = 0.0
        for line in self.client.metrics().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self):
        if self.proc.poll() is None:
            self.client.close()
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)
        self.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


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
