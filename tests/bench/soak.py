"""Soak: freshd for a set time under a mixed load (searches, sampled
negatives, updates, refits, index reloads, and checkpoint pulls into a
second daemon), sampling the trainer daemon's resident memory, open file
descriptors, threads and data-dir size every few seconds.

    /usr/bin/python3 tests/bench/soak.py --minutes 60     # by hand
    /usr/bin/python3 tests/bench/soak.py --minutes 2      # CI

Passes when, after the warm-up (the first quarter), every series stays
flat (the median of its last third no higher than that of its middle
third, within a margin:
RSS 10% + 16 MiB, fds and threads +4, the data dir bounded by its
compaction), no answer was an error except the designed ones (503 while a
reload swaps), and after a restart every acknowledged update is there.
Writes the series and a plot to tests/bench/results/soak.{json,png}.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time

import numpy as np

from benchlib import Freshd

from freshd_client import FreshdError  # noqa: E402 - benchlib puts it on the path

HERE = os.path.dirname(os.path.abspath(__file__))
N, D = 50000, 64


def proc_stat(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss_mib"] = int(line.split()[1]) / 1024.0
            elif line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
    out["fds"] = len(os.listdir("/proc/%d/fd" % pid))
    return out


def dir_mib(path):
    """The data dir's own files (not the index files the operator puts
    there for reloads)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            if f.endswith(".npy"):
                continue
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total / 2 ** 20


class Load:
    """The mixed load; counts answers by kind and keeps every ack."""

    def __init__(self, trainer, replica, data_dir, X, X2):
        self.t, self.r, self.dir, self.X, self.X2 = trainer, replica, data_dir, X, X2
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts, self.errors = {}, []
        self.acked = {}  # id -> vector, for the index served now
        self.gen = 0
        self.switching = False  # a reload is on its way

    def count(self, what):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def error(self, what, e):
        with self.lock:
            self.errors.append("%s: %s" % (what, e))

    def searcher(self, seed):
        rng = np.random.default_rng(seed)
        c = self.t.client.__class__(self.t.url)
        while not self.stop.is_set():
            q = rng.standard_normal((int(rng.integers(1, 9)), D)).astype(np.float32)
            try:
                if rng.random() < 0.5:
                    c.search(q, k=10)
                    self.count("search")
                else:
                    c.negatives(q, n=8, method="sample", temperature=0.5, seed=int(rng.integers(1 << 30)))
                    self.count("negatives")
            except FreshdError as e:
                if not (e.status == 503 and e.code == "not_ready"):
                    self.error("search", e)
            except OSError as e:
                self.error("search", e)

    def updater(self):
        rng = np.random.default_rng(7)
        c = self.t.client.__class__(self.t.url)
        while not self.stop.is_set():
            ids = rng.choice(N, 32, replace=False)
            with self.lock:
                gen, sure = self.gen, not self.switching
            base = self.X2 if gen % 2 else self.X
            G = (base[ids] * 1.2 + 0.1 + 0.01 * rng.standard_normal((32, D))).astype(np.float32)
            try:
                c.update(ids.tolist(), G)
                self.count("update")
                with self.lock:
                    # An update that races a reload's switch may land on
                    # either side of it: only the others are checked.
                    if sure and not self.switching and self.gen == gen:
                        for i, g in zip(ids, G):
                            self.acked[int(i)] = g
            except (FreshdError, OSError) as e:
                self.error("update", e)
            time.sleep(0.01)

    def operator(self, period):
        """Refits, checkpoint pulls into the replica, and reloads."""
        c = self.t.client.__class__(self.t.url)
        step = 0
        while not self.stop.wait(period):
            step += 1
            try:
                c.refit(wait=True)
                self.count("refit")
                self.r.client.put_checkpoint(c.checkpoint(), force=True)
                self.count("checkpoint_pull")
                if step % 5 == 0:
                    with self.lock:
                        self.switching = True
                        gen = self.gen + 1
                    name = "index-%d.npy" % gen
                    np.save(os.path.join(self.dir, name), self.X2 if gen % 2 else self.X)
                    c.reload(name)
                    while (c.info()["index"].get("reload") or {}).get("state") == "loading":
                        time.sleep(0.05)
                    with self.lock:  # the old index's pairs went with it
                        self.gen = gen
                        self.acked = {}
                        self.switching = False
                    if gen > 1:
                        os.unlink(os.path.join(self.dir, "index-%d.npy" % (gen - 1)))
                    self.count("reload")
            except (FreshdError, OSError) as e:
                self.error("operator", e)


def flat(series, margin_rel, margin_abs):
    n = len(series)
    warm = n // 4
    rest = series[warm:]
    if len(rest) < 6:
        return True, "too short to judge"
    third = len(rest) // 3
    mid, last = sorted(rest[third:2 * third]), sorted(rest[2 * third:])
    # Medians: a reload holds two models for a moment; a leak moves them.
    m_mid, m_last = mid[len(mid) // 2], last[len(last) // 2]
    ok = m_last <= m_mid * (1 + margin_rel) + margin_abs
    return ok, "median of the middle third %.1f, of the last %.1f (max %.1f)" % (
        m_mid, m_last, max(last))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--sample-seconds", type=float, default=None)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args(argv)
    every = a.sample_seconds or max(1.0, a.minutes * 60 / 300)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((N, D)).astype(np.float32)
    X2 = rng.standard_normal((N, D)).astype(np.float32)
    work = tempfile.mkdtemp(prefix="freshd-soak-")
    tdir, rdir = os.path.join(work, "trainer"), os.path.join(work, "replica")
    os.makedirs(tdir)
    os.makedirs(rdir)
    np.save(os.path.join(work, "index.npy"), X)
    flags = ["--index", os.path.join(work, "index.npy"), "--corrector", "mlp", "--hidden", "64",
             "--refit-every-pairs", "0", "--refit-every-seconds", "0", "--min-pairs", "64",
             "--refit-max-seconds", "2", "--log-level", "warn"]
    trainer = Freshd(*flags, data_dir=tdir)
    replica = Freshd(*flags, data_dir=rdir)
    load = Load(trainer, replica, tdir, X, X2)
    threads = [threading.Thread(target=load.searcher, args=(s,)) for s in (1, 2)]
    threads += [threading.Thread(target=load.updater),
                threading.Thread(target=load.operator, args=(max(2.0, a.minutes * 60 / 60),))]
    for t in threads:
        t.start()
    samples, t0 = [], time.time()
    try:
        while time.time() - t0 < a.minutes * 60:
            s = proc_stat(trainer.proc.pid)
            s["t"] = round(time.time() - t0, 1)
            s["data_mib"] = round(dir_mib(tdir), 2)
            s["replica_rss_mib"] = proc_stat(replica.proc.pid)["rss_mib"]
            samples.append(s)
            time.sleep(every)
    finally:
        load.stop.set()
        for t in threads:
            t.join()
    replica.stop()
    trainer.stop()
    # Every acknowledged update of the index served at the end survives a restart.
    lost = 0
    again = Freshd(*flags, data_dir=tdir)
    try:
        for i, g in sorted(load.acked.items()):
            f = again.client.target(i)["fresh"]
            lost += f is None or np.asarray(f, np.float32).tobytes() != g.tobytes()
    finally:
        again.stop()
    checks = {
        "rss": flat([s["rss_mib"] for s in samples], 0.10, 16),
        "fds": flat([s["fds"] for s in samples], 0, 4),
        "threads": flat([s["threads"] for s in samples], 0, 4),
        "data_dir": flat([s["data_mib"] for s in samples], 0.25, 8),
        "replica_rss": flat([s["replica_rss_mib"] for s in samples], 0.10, 16),
    }
    ok = all(v[0] for v in checks.values()) and not load.errors and lost == 0
    report = {"minutes": a.minutes, "counts": load.counts, "errors": load.errors[:20],
              "acknowledged_checked": len(load.acked), "lost": lost,
              "checks": {k: {"flat": v[0], "detail": v[1]} for k, v in checks.items()},
              "samples": samples, "pass": ok}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "soak.json"), "w") as f:
        json.dump(report, f, indent=1)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
        tt = [s["t"] / 60 for s in samples]
        for ax, key, label in zip(axes, ("rss_mib", "fds", "threads", "data_mib"),
                                  ("RSS (MiB)", "open fds", "threads", "data dir (MiB)")):
            ax.plot(tt, [s[key] for s in samples])
            ax.set_ylabel(label)
        axes[0].plot(tt, [s["replica_rss_mib"] for s in samples], label="replica")
        axes[0].legend()
        axes[-1].set_xlabel("minutes")
        fig.suptitle("freshd soak, %.0f min: %s" % (a.minutes, ", ".join(
            "%d %s" % (v, k) for k, v in sorted(load.counts.items()))), fontsize=8)
        fig.savefig(os.path.join(a.out, "soak.png"), dpi=90)
    except ImportError:
        pass
    print("soak %.1f min: %s; errors %d; acknowledged updates checked %d, lost %d" % (
        a.minutes, ", ".join("%d %s" % (v, k) for k, v in sorted(load.counts.items())),
        len(load.errors), len(load.acked), lost))
    for k, (good, detail) in checks.items():
        print("  %-12s %s (%s)" % (k, "flat" if good else "GROWS", detail))
    for e in load.errors[:10]:
        print("  error: " + e)
    shutil.rmtree(work, True)
    print("soak: %s" % ("pass" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
