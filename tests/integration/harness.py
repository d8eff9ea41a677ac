"""Starts the real freshd on a free loopback port for integration tests.

A test gets a Daemon: the process, its URL, a Client, its data dir. The
daemon is stopped with SIGTERM; its exit code must be 0 and its stderr must
hold no sanitizer report, or the test fails.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))

from freshd_client import Client, FreshdError  # noqa: E402,F401 - FreshdError re-exported to tests

FRESHD = os.environ.get("FRESHD_BIN", os.path.join(HERE, "..", "..", "build", "server", "freshd"))

SANITIZER = re.compile(r"(ERROR: AddressSanitizer|ERROR: LeakSanitizer|"
                       r"WARNING: ThreadSanitizer|runtime error:|"
                       r"ERROR: UndefinedBehaviorSanitizer)")

# Sanitizer builds are slower: scale waits by this.
SLOW = float(os.environ.get("FRESHD_TEST_SLOWDOWN", "1"))


class Daemon:
    """One freshd process. Use as a context manager or call stop()."""

    def __init__(self, *args, data_dir=None, env=None, api_key=None, start=True,
                 keep_dir=False):
        self.owns_dir = data_dir is None and not keep_dir
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="freshd-it-")
        self.args = list(args)
        self.env = dict(os.environ, **(env or {}))
        self.api_key = api_key
        self.proc = None
        self.url = None
        self.stderr_path = os.path.join(tempfile.gettempdir(),
                                        "freshd-it-%d-%d.err" % (os.getpid(), id(self)))
        if start:
            self.start()

    def start(self, timeout=60.0):
        cmd = [FRESHD, "--listen", "127.0.0.1:0", "--data-dir", self.data_dir] + self.args
        self.stderr = open(self.stderr_path, "w+b")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr,
                                     env=self.env)
        line = self.proc.stdout.readline().decode()
        m = re.match(r"freshd: listening on (http://\S+)$", line.strip())
        if not m:
            self.proc.wait(timeout=10)
            raise RuntimeError("freshd did not start: %r\n%s" % (line, self.read_stderr()))
        self.url = m.group(1)
        self.client = Client(self.url, api_key=self.api_key)
        deadline = time.time() + timeout * SLOW
        while True:
            try:
                self.client.healthz()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        return self

    def read_stderr(self):
        self.stderr.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def kill(self):
        """SIGKILL, as a crash would."""
        self.proc.kill()
        self.proc.wait()
        self.client.close()

    def stop(self, check=True):
        """SIGTERM; the exit must be clean and quick, stderr free of reports."""
        if self.proc is None:
            return ""
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30 * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("freshd did not exit within %ds of SIGTERM" % (30 * SLOW))
        err = self.read_stderr()
        self.proc.stdout.close()
        self.stderr.close()
        os.unlink(self.stderr_path)
        self.proc = None
        if check:
            if code != 0:
                raise AssertionError("freshd exited %d:\n%s" % (code, err[-4000:]))
            found = SANITIZER.search(err)
            if found:
                raise AssertionError("sanitizer report in freshd's stderr:\n%s" % err[-8000:])
        return err

    def cleanup(self):
        if self.owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.stop(check=exc[0] is None)
        finally:
            self.cleanup()


def run(argv=None):
    """unittest.main with a summary line the CI script counts."""
    result = unittest.main(argv=argv, exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
