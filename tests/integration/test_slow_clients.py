"""Slow and hostile clients, from their own loopback addresses (Linux
routes all of 127/8 to lo), while a steady client searches from
127.0.0.1:

  - slowloris (headers a byte at a time): --max-connections-per-ip bounds
    what one address holds; the steady client is served throughout;
  - a body that stalls: the connection is closed after
    --connection-timeout, and its thread is freed;
  - a flood of idle connections past --max-connections: the daemon holds
    at most that many (one thread each), the rest wait in the kernel's
    listen backlog, and as the idle ones time out, a limit's worth at a
    time, a new client is served again.

Reports the steady client's p50/p99 under each."""

import os
import socket
import threading
import time
import unittest

import numpy as np

from harness import SLOW, run
from support import ApiCase, call

PER_IP, MAX_CONN, TIMEOUT = 8, 64, 2


def threads_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def connect_from(addr, port):
    s = socket.socket()
    s.settimeout(5)
    s.bind((addr, 0))
    s.connect(("127.0.0.1", port))
    return s


class Steady:
    """Searches in a loop from 127.0.0.1; latencies and failures."""

    def __init__(self, d):
        self.d, self.lat, self.failures = d, [], 0
        self.stop = threading.Event()
        self.q = {"vector": np.random.default_rng(1).standard_normal(128).tolist(), "k": 5}
        self.t = threading.Thread(target=self.loop)
        self.t.start()

    def loop(self):
        while not self.stop.is_set():
            t0 = time.time()
            try:
                r = call(self.d, "POST", "/v1/search", self.q, timeout=10)
                ok = r.status == 200
            except OSError:
                ok = False
            if ok:
                self.lat.append(time.time() - t0)
            else:
                self.failures += 1
                time.sleep(0.05)

    def finish(self):
        self.stop.set()
        self.t.join()
        lat = sorted(self.lat)
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
        return len(lat), self.failures, p(0.5), p(0.99)


class SlowClients(ApiCase):
    report = []

    @classmethod
    def tearDownClass(cls):
        for line in cls.report:
            print(line)

    def daemon(self):
        return self.start("--demo", "--demo-size", "20000", "--max-connections-per-ip", str(PER_IP),
                          "--max-connections", str(MAX_CONN), "--connection-timeout", str(TIMEOUT))

    def port(self, d):
        return int(d.url.rsplit(":", 1)[1])

    def test_slowloris_from_one_address(self):
        d = self.daemon()
        base = threads_of(d.proc.pid)
        steady = Steady(d)
        socks, refused = [], 0
        for _ in range(4 * PER_IP):
            try:
                s = connect_from("127.0.0.2", self.port(d))
                s.sendall(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n")
                socks.append(s)
            except OSError:
                refused += 1
        # Drip a header byte from each every 0.5 s for a while.
        most = 0
        for _ in range(int(6 / 0.5)):
            for s in list(socks):
                try:
                    s.sendall(b"X")
                except OSError:
                    s.close()
                    socks.remove(s)
            most = max(most, threads_of(d.proc.pid) - base)
            time.sleep(0.5)
        n, failures, p50, p99 = steady.finish()
        for s in socks:
            s.close()
        self.report.append("slowloris, %d connections tried from one address (limit %d): %d "
                           "refused or closed; daemon threads +%d at most; steady client %d "
                           "searches, %d failed, p50 %.1f ms, p99 %.1f ms" % (
                               4 * PER_IP, PER_IP, 4 * PER_IP - len(socks), most, n, failures,
                               p50, p99))
        self.assertEqual(failures, 0)
        self.assertGreater(n, 20)
        self.assertLess(p99, 1000 * SLOW)
        self.assertLessEqual(most, PER_IP + 4)  # + a steady connection and slack

    def test_stalled_body_is_cut_off(self):
        d = self.daemon()
        base = threads_of(d.proc.pid)
        steady = Steady(d)
        s = connect_from("127.0.0.3", self.port(d))
        s.sendall(b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"vector\": [")
        t0 = time.time()
        s.settimeout(TIMEOUT * 5 * SLOW)
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        closed_after = time.time() - t0
        s.close()
        n, failures, p50, p99 = steady.finish()
        self.report.append("stalled body: closed after %.1f s (--connection-timeout %d); steady "
                           "client %d searches, %d failed, p50 %.1f ms, p99 %.1f ms" % (
                               closed_after, TIMEOUT, n, failures, p50, p99))
        self.assertEqual(data, b"")
        self.assertLess(closed_after, TIMEOUT * 3 * SLOW)
        self.assertEqual(failures, 0)
        deadline = time.time() + 5 * SLOW
        while threads_of(d.proc.pid) > base + 1 and time.time() < deadline:
            time.sleep(0.05)
        self.assertLessEqual(threads_of(d.proc.pid), base + 1)

    def test_idle_flood_past_the_limit(self):
        d = self.daemon()
        base = threads_of(d.proc.pid)
        socks, closed = [], 0
        # 4 x the limit, from as many addresses as the per-address limit needs.
        for i in range(4 * MAX_CONN):
            addr = "127.0.1.%d" % (1 + i // PER_IP)
            try:
                socks.append(connect_from(addr, self.port(d)))
            except OSError:
                closed += 1
        # Wait until the daemon has taken what it will take: its thread
        # count at the limit, or steady for a second.
        last, since, deadline = -1, time.time(), time.time() + 10 * SLOW
        while time.time() < deadline:
            now = threads_of(d.proc.pid) - base
            if now >= MAX_CONN - 1:
                break
            if now != last:
                last, since = now, time.time()
            elif time.time() - since > 1.0:
                break
            time.sleep(0.05)
        most = threads_of(d.proc.pid) - base
        t0 = time.time()
        # Once the idle ones time out, a new client is served.
        served_after = None
        rounds = -(-len(socks) // MAX_CONN)  # the backlog is served a limit at a time
        while time.time() - t0 < (rounds + 2) * TIMEOUT * SLOW:
            try:
                if call(d, "GET", "/healthz", timeout=2).status == 200:
                    served_after = time.time() - t0
                    break
            except OSError:
                pass
            time.sleep(0.1)
        for s in socks:
            s.close()
        self.report.append("idle flood: %d connections opened (--max-connections %d; the rest "
                           "wait in the kernel's backlog); daemon threads +%d; a new client "
                           "served %.1f s later (--connection-timeout %d)" % (
                               len(socks), MAX_CONN, most,
                               served_after if served_after is not None else -1, TIMEOUT))
        self.assertLessEqual(most, MAX_CONN + 2)
        self.assertIsNotNone(served_after, "no client served after the idle ones timed out")


if __name__ == "__main__":
    run()
