"""Crash recovery: a client streams updates and triggers refits while the
daemon is killed with SIGKILL at random moments; after each restart every
acknowledged update is present (count and content), the corrector version
is at least the last one published before the kill, and searches answer.

The same with a simulated power loss (FRESHD_TEST_SIMULATE_POWER_LOSS: the
update log keeps unsynced writes in process memory, so a kill loses what
a power cut could) for the default `--sync always` policy, where nothing
acknowledged may be lost, and, as a measurement only, for `interval`.

Also a script: `python3 test_crash.py --trials 50` runs more kills.
"""

import argparse
import os
import random
import sys
import tempfile
import threading
import time
import unittest

import numpy as np

from harness import SLOW, Daemon, FreshdError, run

N, D = 2000, 16
TRIALS = int(os.environ.get("FRESHD_CRASH_TRIALS", "20"))


def fresh_vector(target, step):
    """A vector that encodes (target, step), exact in float32."""
    v = np.full(D, (step % 4096) / 64.0, dtype=np.float32)
    v[0] = target / 8.0
    v[1] = (step // 4096) / 8.0
    return v


class Stream:
    """Streams updates and refits until stopped; records what was acked."""

    def __init__(self, client, rng, step0):
        self.client = client
        self.rng = rng
        self.step = step0
        self.acked = {}        # id -> newest acknowledged step
        self.acked_pairs = 0
        self.inflight = 0      # pairs sent whose answer never came
        self.version = 0       # newest version seen published
        self.stop = threading.Event()
        self.errors = []

    def updates(self):
        while not self.stop.is_set():
            ids = [int(i) for i in self.rng.choice(N, 8, replace=False)]
            self.step += 1
            vecs = np.stack([fresh_vector(i, self.step) for i in ids])
            try:
                self.client.update(ids, vecs, step=self.step)
            except (OSError, FreshdError) as e:
                if not isinstance(e, OSError):
                    self.errors.append(e)
                self.inflight += len(ids)
                return
            self.acked_pairs += len(ids)
            for i in ids:
                self.acked[i] = self.step

    def refits(self, client):
        try:
            while not self.stop.is_set():
                try:
                    client.refit()
                    self.version = max(self.version, client.corrector()["version"])
                except OSError:
                    return
                except FreshdError as e:
                    self.errors.append(e)
                time.sleep(0.05)
        finally:
            client.close()


class CrashTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="freshd-crash-")
        rng = np.random.default_rng(5)
        self.index = os.path.join(self.dir, "index.npy")
        np.save(self.index, rng.standard_normal((N, D)).astype("<f4"))

    def kill_loop(self, trials, env=None, sync="always", must_keep=True):
        data = os.path.join(self.dir, "data-" + sync + ("-pl" if env else ""))
        args = ["--index", self.index, "--corrector", "affine", "--min-pairs", "32",
                "--refit-every-pairs", "400", "--sync", sync]
        rng = np.random.default_rng(11)
        stream_state = {"acked": {}, "pairs": 0, "version": 0, "step": 0}
        lost = 0
        for trial in range(trials):
            d = Daemon(*args, data_dir=data, env=env)
            try:
                c = d.client
                # Everything acknowledged before the last kill is here.
                info = c.corrector()
                self.assertGreaterEqual(info["version"], stream_state["version"],
                                        "trial %d: version went back" % trial)
                total = info["pairs"]["total"]
                if must_keep:
                    self.assertGreaterEqual(total, stream_state["pairs"],
                                            "trial %d: acknowledged pairs lost" % trial)
                check = list(stream_state["acked"].items())
                random.Random(trial).shuffle(check)
                for target, step in check[:60]:
                    got = c.target(target)
                    if got["fresh_step"] is None or got["fresh_step"] < step:
                        lost += 1
                        if must_keep:
                            self.fail("trial %d: target %d lost step %d (has %r)"
                                      % (trial, target, step, got["fresh_step"]))
                        continue
                    if got["fresh_step"] == step:
                        np.testing.assert_array_equal(
                            np.asarray(got["fresh"], dtype=np.float32),
                            fresh_vector(target, step))
                self.assertEqual(len(c.search(np.ones(D, np.float32), k=5)["results"][0]), 5)
                # Stream until a random moment, then kill.
                s = Stream(c, rng, stream_state["step"])
                s.acked = dict(stream_state["acked"])
                s.acked_pairs = total if not must_keep else stream_state["pairs"]
                s.version = info["version"]
                from freshd_client import Client
                threads = [threading.Thread(target=s.updates),
                           threading.Thread(target=s.refits, args=(Client(d.url),))]
                for t in threads:
                    t.start()
                time.sleep(rng.uniform(0.1, 0.8) * SLOW)
                d.kill()
                s.stop.set()
                for t in threads:
                    t.join(timeout=30)
                self.assertEqual(s.errors, [], "trial %d: error answers" % trial)
                stream_state = {"acked": s.acked, "pairs": s.acked_pairs,
                                "version": s.version, "step": s.step + 10}
            finally:
                if d.proc is not None:
                    d.kill()
                d.stderr.close()
        # The final restart must find everything too, then stop cleanly.
        with Daemon(*args, data_dir=data, env=env) as d:
            info = d.client.corrector()
            self.assertGreaterEqual(info["version"], stream_state["version"])
            if must_keep:
                self.assertGreaterEqual(info["pairs"]["total"], stream_state["pairs"])
            sys.stderr.write("%s%s: %d kills; %d pairs acknowledged, %d recovered "
                             "(total); version %d before the last kill, %d after\n"
                             % (sync, " (simulated power loss)" if env else "", trials,
                                stream_state["pairs"], info["pairs"]["total"],
                                stream_state["version"], info["version"]))
        return lost

    def test_sigkill(self):
        self.kill_loop(TRIALS)

    def test_power_loss_always(self):
        self.kill_loop(max(TRIALS // 2, 5), env={"FRESHD_TEST_SIMULATE_POWER_LOSS": "1"})

    def test_power_loss_interval_measured(self):
        # interval=MS trades durability for speed: acknowledged updates of
        # the last interval can be lost. Measured, not asserted.
        lost = self.kill_loop(5, env={"FRESHD_TEST_SIMULATE_POWER_LOSS": "1"},
                              sync="interval=500", must_keep=False)
        sys.stderr.write("interval=500: %d of the sampled acknowledged targets "
                         "lost their newest pair across 5 simulated power losses\n" % lost)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=TRIALS)
    args, rest = ap.parse_known_args()
    TRIALS = args.trials
    run([sys.argv[0]] + rest)
