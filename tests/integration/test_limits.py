"""Connection limits: idle and slow connections are closed after
--connection-timeout, one address cannot hold more than
--max-connections-per-ip connections while another still gets in, and
--max-connections caps them all (more wait unserved until a slot frees);
the daemon serves on afterwards."""

import socket
import time
import unittest

from harness import SLOW, Daemon, run


def connect(daemon, source="127.0.0.1"):
    host, port = daemon.url[len("http://"):].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5, source_address=(source, 0))
    return s


def closed_by_peer(sock, wait):
    """True when the server closes (EOF or reset) within wait seconds."""
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def healthy(daemon, source="127.0.0.1"):
    s = connect(daemon, source)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.settimeout(5)
        return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
    finally:
        s.close()


class Limits(unittest.TestCase):
    def test_idle_and_slow_connections_time_out(self):
        with Daemon("--demo", "--demo-size", "2000", "--demo-dim", "8",
                    "--connection-timeout", "2") as d:
            idle = connect(d)
            slow = connect(d)
            slow.sendall(b"POST /v1/search HTTP/1.1\r\nHost: x\r\n")  # then nothing
            t = time.time()
            self.assertTrue(closed_by_peer(idle, 10 * SLOW), "idle connection kept open")
            self.assertTrue(closed_by_peer(slow, 10 * SLOW), "half-sent request kept open")
            self.assertLess(time.time() - t, 8 * SLOW)
            idle.close()
            slow.close()
            self.assertTrue(healthy(d))

    def test_per_address_limit(self):
        with Daemon("--demo", "--demo-size", "2000", "--demo-dim", "8",
                    "--max-connections-per-ip", "4") as d:
            d.client.close()  # its kept-alive connection would count
            time.sleep(0.2)
            held = [connect(d) for _ in range(4)]
            time.sleep(0.2)
            extra = connect(d)
            self.assertTrue(closed_by_peer(extra, 5), "a fifth connection from one address")
            extra.close()
            # Another loopback address is a different client.
            self.assertTrue(healthy(d, source="127.0.0.2"))
            for s in held:
                s.close()
            time.sleep(0.2)
            self.assertTrue(healthy(d))

    def test_connection_limit(self):
        # At the limit, new connections wait in the listen queue, unserved,
        # until a slot frees.
        with Daemon("--demo", "--demo-size", "2000", "--demo-dim", "8",
                    "--max-connections", "6") as d:
            d.client.close()  # its kept-alive connection would count
            time.sleep(0.2)
            held = [connect(d, "127.0.0.%d" % (2 + i)) for i in range(6)]
            time.sleep(0.2)
            extra = connect(d, "127.0.0.9")
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            extra.settimeout(1.0)
            with self.assertRaises(socket.timeout, msg="served past the limit"):
                extra.recv(64)
            held.pop().close()
            extra.settimeout(10 * SLOW)
            self.assertTrue(extra.recv(64).startswith(b"HTTP/1.1 200"))
            extra.close()
            for s in held:
                s.close()
            time.sleep(0.3)
            self.assertTrue(healthy(d))


if __name__ == "__main__":
    run()
