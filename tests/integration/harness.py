"""Starts the real freshd on a free loopback port for integration tests.

A test gets a Daemon: the process, its URL, a Client, its data dir. The
daemon is stopped with SIGTERM; its exit code must be 0 and its stderr must
hold no sanitizer report, or the test fails.
"""

import os
import re
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))

import freshd_daemon  # noqa: E402
from freshd_client import FreshdError  # noqa: E402,F401 - re-exported to tests

FRESHD = os.environ.get("FRESHD_BIN", os.path.join(HERE, "..", "..", "build", "server", "freshd"))

SANITIZER = re.compile(r"(ERROR: AddressSanitizer|ERROR: LeakSanitizer|"
                       r"WARNING: ThreadSanitizer|runtime error:|"
                       r"ERROR: UndefinedBehaviorSanitizer)")

# Sanitizer builds are slower: scale waits by this.
SLOW = float(os.environ.get("FRESHD_TEST_SLOWDOWN", "1"))


class Daemon(freshd_daemon.Daemon):
    """One freshd process (the shared helper, clients/python/freshd_daemon.py)
    held to the tests' standard: its stop must be a clean, quick exit 0 with
    no sanitizer report in its stderr. Use as a context manager or call
    stop()."""

    def __init__(self, *args, data_dir=None, env=None, api_key=None, start=True,
                 keep_dir=False):
        super().__init__(*args, binary=FRESHD, data_dir=data_dir, env=env, api_key=api_key,
                         timeout=60.0 * SLOW, keep_dir=keep_dir, start=False)
        if start:
            self.start()

    def stop(self, check=True):
        """SIGTERM; the exit must be clean and quick, stderr free of reports."""
        if self.proc is None:
            return ""
        code, err = super().stop(timeout=30 * SLOW)
        self.remove_log()
        if check:
            if code != 0:
                raise AssertionError("freshd exited %d:\n%s" % (code, err[-4000:]))
            found = SANITIZER.search(err)
            if found:
                raise AssertionError("sanitizer report in freshd's stderr:\n%s" % err[-8000:])
        return err

    def __exit__(self, *exc):
        try:
            self.stop(check=exc[0] is None)
        finally:
            self.cleanup()


def run(argv=None):
    """unittest.main with a summary line the CI script counts."""
    result = unittest.main(argv=argv, exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
