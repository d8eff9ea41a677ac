"""Shutdown: SIGTERM while a `refit?wait=true` is in flight abandons the refit,
answers the waiting request and exits 0 within a few seconds, with the pairs
durable and the version unchanged on restart; SIGTERM and SIGINT right
after the listening line (or while the index loads) exit 0 as well."""

import shutil
import signal
import subprocess
import tempfile
import threading
import time

import numpy as np

from harness import FRESHD, run
from freshd_client import Client, FreshdError  # noqa: E402 (harness puts it on the path)
from support import (SLOW, ApiCase, index_args, int_matrix, metric_value, save_index,
                     wait_until)


def catches(pid, sig):
    """Whether the process has a handler for sig (SigCgt in /proc)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except OSError:
        pass
    return False


def refit_waiters(client):
    """Requests inside the refit handler, from /metrics."""
    v = metric_value(client.metrics(), "freshd_http_requests_in_progress", {"endpoint": "refit"})
    if v is None:
        raise AssertionError("no freshd_http_requests_in_progress for refit in /metrics")
    return v


class Shutdown(ApiCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_sigterm_during_refit_wait(self):
        n, dim = 6000, 64
        rng = np.random.default_rng(81)
        X = rng.standard_normal((n, dim)).astype(np.float32)
        # A residual-MLP-shaped new encoder: training keeps improving, so the
        # refit runs for many seconds unless cancelled.
        W1 = rng.standard_normal((dim, 64)).astype(np.float32) / 8
        W2 = rng.standard_normal((64, dim)).astype(np.float32) / 4
        F = X + np.maximum(X @ W1, 0) @ W2
        ip, _ = save_index(self.tmp, X)
        args = index_args(ip, None, "--hidden", "1024", "--refit-max-seconds", "60")
        d = self.start(*args, keep_dir=True)
        self.addCleanup(shutil.rmtree, d.data_dir, True)
        for i in range(0, n, 2000):
            d.client.update(list(range(i, i + 2000)), F[i:i + 2000], step=1)
        answer = {}

        def waiter():
            c = Client(d.url, timeout=60 * SLOW)
            try:
                answer["reply"] = c.refit(wait=True)
            except FreshdError as e:
                answer["error"] = e
            except OSError as e:
                answer["dropped"] = e

        t = threading.Thread(target=waiter)
        t.start()
        watcher = Client(d.url)
        st = wait_until(lambda: (lambda s: s if s["state"] == "training" and s["progress"] > 0
                                 else None)(watcher.corrector()), timeout=20)
        self.assertTrue(st, "the refit never started training")
        # The waiting request must be in the server's hands before SIGTERM:
        # otherwise it may connect after the listener closed.
        self.assertTrue(wait_until(lambda: refit_waiters(watcher) >= 1, timeout=20),
                        "the refit?wait=true request never reached its handler")
        self.assertEqual(watcher.corrector()["state"], "training",
                         "the refit finished before SIGTERM; make it longer")
        watcher.close()
        t0 = time.time()
        d.stop()                     # SIGTERM; checks exit 0 and a clean stderr
        elapsed = time.time() - t0
        t.join(10 * SLOW)
        self.assertFalse(t.is_alive(), "the waiting refit request was never answered")
        self.assertLess(elapsed, 5.0 * SLOW, "exit took %.1fs" % elapsed)
        self.assertNotIn("dropped", answer, "the in-flight request got no HTTP answer")
        if "reply" in answer:
            # Finished after all: must then have been published.
            self.assertTrue(answer["reply"]["accepted"], answer)
        else:
            self.assertGreaterEqual(answer["error"].status, 500, answer)
        # The pairs are durable; an abandoned refit publishes nothing.
        d2 = self.start(*args, data_dir=d.data_dir)
        corr = d2.client.corrector()
        self.assertEqual(corr["pairs"], {"buffered": n, "total": n})
        self.assertEqual(corr["version"], 1 if "reply" in answer else 0)

    def test_signal_right_after_listening(self):
        # BUG: a signal that arrives before the main thread reaches sigwait is
        # taken by a thread that does not block it (OpenBLAS's workers start
        # before main() blocks SIGTERM) and kills the process (exit -15).
        ip, _ = save_index(self.tmp, int_matrix(500, 8, seed=82))
        codes = []
        for i in range(16):
            sig = signal.SIGTERM if i % 2 == 0 else signal.SIGINT
            p = subprocess.Popen([FRESHD, "--listen", "127.0.0.1:0", "--data-dir",
                                  "%s/d%d" % (self.tmp, i)] + index_args(ip),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            line = p.stdout.readline()
            self.assertTrue(line.startswith(b"freshd: listening on http://127.0.0.1:"), line)
            p.send_signal(sig)
            out, err = p.communicate(timeout=30 * SLOW)
            codes.append(p.returncode)
        self.assertEqual(codes, [0] * 16)

    def test_sigterm_while_loading(self):
        # BUG: same cause as above; SIGTERM during startup kills the process.
        p = subprocess.Popen([FRESHD, "--listen", "127.0.0.1:0", "--data-dir",
                              self.tmp + "/demo", "--demo", "--demo-size", "200000"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # A signal before main() installs its handler kills any process;
        # wait until the handler is in place (the load takes far longer).
        self.assertTrue(wait_until(lambda: catches(p.pid, signal.SIGTERM), timeout=20),
                        "freshd never installed its SIGTERM handler")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30 * SLOW)
        self.assertEqual(p.returncode, 0, err.decode(errors="replace")[-2000:])


if __name__ == "__main__":
    run()
