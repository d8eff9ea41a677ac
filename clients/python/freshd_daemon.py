"""Start a local freshd and stop it: for tests, benchmarks and trainers.

    from freshd_daemon import Daemon

    with Daemon("--index", "corpus.npy", binary="build/server/freshd") as d:
        d.client.search([[0.1] * 768], k=10)

The daemon listens on 127.0.0.1 port 0 (the kernel picks a free port; the
URL comes from the daemon's "freshd: listening on URL" line), gets a data
dir of its own unless given one, writes its log to a file, and is stopped
with SIGTERM. Standard library only, like freshd_client.
"""

import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time

from freshd_client import Client, FreshdError

__all__ = ["Daemon"]

LISTENING = re.compile(r"freshd: listening on (http://\S+)")


class Daemon:
    """One freshd process on a loopback port. Use as a context manager or
    call stop(). Attributes: proc, url, client, data_dir, stderr_path (its
    log) and ready_seconds (from exec to the listening line)."""

    def __init__(self, *args, binary=None, data_dir=None, env=None, api_key=None,
                 stderr_path=None, ready="healthz", timeout=60.0, client_timeout=60.0,
                 keep_dir=False, start=True):
        """args: freshd's flags. binary: the freshd to run (default
        $FRESHD_BIN, else freshd on PATH). data_dir: kept after stop when
        given (or keep_dir), else a new temporary one, removed by
        cleanup(). ready: what start() waits for after the listening line
        ("healthz", "readyz" or None). timeout: of start()'s waits."""
        self.binary = binary or os.environ.get("FRESHD_BIN") or "freshd"
        self.owns_dir = data_dir is None and not keep_dir
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="freshd-")
        self.args = [str(a) for a in args]
        self.env = dict(os.environ, **(env or {}))
        self.api_key = api_key
        self.stderr_path = stderr_path or os.path.join(
            tempfile.gettempdir(), "freshd-%d-%d.log" % (os.getpid(), id(self)))
        self.ready = ready
        self.timeout = timeout
        self.client_timeout = client_timeout
        self.proc = self.url = self.client = self.stderr = None
        self.ready_seconds = None
        if start:
            self.start()

    def start(self, timeout=None):
        """Starts the process and waits until it listens (and is ready).
        RuntimeError with the log's tail when it exits first."""
        timeout = self.timeout if timeout is None else timeout
        cmd = [self.binary, "--listen", "127.0.0.1:0", "--data-dir", self.data_dir] + self.args
        self.stderr = open(self.stderr_path, "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr,
                                     stdin=subprocess.DEVNULL, env=self.env)
        url = self._listening_line(t0 + timeout)
        if url is None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            raise RuntimeError("freshd did not start (exit %s): %s\n%s"
                               % (self.proc.returncode, " ".join(cmd), self.read_stderr()[-4000:]))
        self.ready_seconds = time.monotonic() - t0
        self.url = url
        self.client = Client(url, api_key=self.api_key, timeout=self.client_timeout)
        if self.ready:
            self._wait_ready(t0 + timeout)
        return self

    def _listening_line(self, deadline):
        buf = b""
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    return None
                buf += chunk
                m = LISTENING.search(buf.decode("utf-8", "replace"))
                if m:
                    return m.group(1)
            elif self.proc.poll() is not None:
                return None
        return None

    def _wait_ready(self, deadline):
        probe = self.client.readyz if self.ready == "readyz" else self.client.healthz
        while True:
            try:
                probe()
                return
            except (OSError, FreshdError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def read_stderr(self):
        """The daemon's log so far."""
        if self.stderr is not None and not self.stderr.closed:
            self.stderr.flush()
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

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

    def kill(self):
        """SIGKILL, as a crash would; the log stays open for a restart."""
        self.proc.kill()
        self.proc.wait()
        self.client.close()

    def stop(self, timeout=30.0):
        """SIGTERM and wait: (exit code, log). TimeoutError (after a
        SIGKILL) when it does not exit in time. Idempotent: (None, "")."""
        if self.proc is None:
            return None, ""
        if self.client is not None:
            self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TimeoutError("freshd did not exit within %gs of SIGTERM:\n%s"
                               % (timeout, self.read_stderr()[-4000:]))
        finally:
            if self.proc.returncode is not None:
                self.proc.stdout.close()
        log = self.read_stderr()
        self.stderr.close()
        self.proc = None
        return code, log

    def remove_log(self):
        try:
            os.unlink(self.stderr_path)
        except OSError:
            pass

    def cleanup(self):
        """Removes the data dir if it was this object's own."""
        if self.owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            self.cleanup()
