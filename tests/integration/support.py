"""Shared pieces of the API tests: index files written with numpy, raw HTTP
requests (for bodies and headers the client would never send), and the
assertions on the error envelope.
"""

import base64
import http.client
import json
import os
import shutil
import socket
import tempfile
import time
import unittest

import numpy as np

from harness import SLOW, Daemon  # noqa: F401  (re-exported for the tests)

BIG_ID = 2 ** 64 - 1          # the largest id JSON may carry
BIG_ID2 = 2 ** 63 + 12345     # above int64's range


def b64(vec):
    return base64.b64encode(np.ascontiguousarray(vec, dtype="<f4").tobytes()).decode("ascii")


def int_matrix(n, d, seed, lo=-3, hi=3):
    """Integer-valued float32 entries: every inner product with an integer
    query is an exact float32, and there are many ties."""
    rng = np.random.default_rng(seed)
    return rng.integers(lo, hi + 1, size=(n, d)).astype(np.float32)


def sparse_ids(n, seed, big=True):
    """Unique, non-sequential, shuffled uint64 ids; with big, two of them
    lie above 2^63 (one is 2^64-1)."""
    rng = np.random.default_rng(seed)
    ids = (np.arange(n, dtype=np.uint64) * np.uint64(7919) + np.uint64(1000003))
    if big:
        ids[1] = np.uint64(BIG_ID2)
        ids[2] = np.uint64(BIG_ID)
    rng.shuffle(ids)
    return ids


class TempDir:
    """A directory removed when the test case ends."""

    @staticmethod
    def make(testcase, prefix="freshd-it-files-"):
        path = tempfile.mkdtemp(prefix=prefix)
        testcase.addCleanup(shutil.rmtree, path, True)
        return path


def save_index(directory, X, ids=None, name="index"):
    """Writes X (and ids) as .npy files; returns (index_path, ids_path)."""
    ipath = os.path.join(directory, name + ".npy")
    np.save(ipath, np.ascontiguousarray(X, dtype="<f4"))
    jpath = None
    if ids is not None:
        jpath = os.path.join(directory, name + "-ids.npy")
        np.save(jpath, ids)
    return ipath, jpath


def save_fvecs(path, X):
    X = np.ascontiguousarray(X, dtype="<f4")
    n, d = X.shape
    out = np.empty((n, d + 1), dtype="<i4")
    out[:, 0] = d
    out[:, 1:] = X.view("<i4")
    out.tofile(path)


def index_args(ipath, jpath=None, *extra):
    args = ["--index", ipath]
    if jpath:
        args += ["--ids", jpath]
    # No automatic refits unless a test asks for them: versions stay predictable.
    return args + ["--refit-every-seconds", "0", "--refit-every-pairs", "0"] + list(extra)


class Reply:
    def __init__(self, status, headers, data):
        self.status = status
        self.headers = headers
        self.data = data

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def json(self):
        return json.loads(self.data)

    def __repr__(self):
        return "Reply(%d, %r)" % (self.status, self.data[:300])


def host_port(daemon):
    hp = daemon.url[len("http://"):]
    host, port = hp.rsplit(":", 1)
    return host, int(port)


def call(daemon, method, path, body=None, headers=None, key=None, timeout=30.0):
    """One request on a fresh connection. body: dict/list (sent as JSON with
    Content-Type application/json), str/bytes (sent as is, Content-Type
    application/json unless headers says otherwise; a header set to None is
    left out), or None."""
    host, port = host_port(daemon)
    conn = http.client.HTTPConnection(host, port, timeout=timeout * SLOW)
    h = {}
    data = None
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    elif isinstance(body, str):
        data = body.encode()
        h["Content-Type"] = "application/json"
    elif isinstance(body, (bytes, bytearray)):
        data = bytes(body)
        h["Content-Type"] = "application/json"
    if key is not None:
        h["Authorization"] = "Bearer " + key
    for k, v in (headers or {}).items():
        h.pop(k, None)
        if v is not None:
            h[k] = v
    try:
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        payload = resp.read()
        return Reply(resp.status, resp.getheaders(), payload)
    finally:
        conn.close()


def raw_exchange(daemon, data, timeout=5.0, shut_write=False):
    """Sends bytes on a raw socket and reads until the server closes or a
    full response (headers + Content-Length body) arrived. Returns
    (bytes, seconds)."""
    host, port = host_port(daemon)
    s = socket.create_connection((host, port), timeout=timeout * SLOW)
    t0 = time.time()
    out = b""
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                head, _, rest = out.partition(b"\r\n\r\n")
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length" and len(rest) >= int(value):
                        return out, time.time() - t0
    finally:
        s.close()
    return out, time.time() - t0


def parse_raw(out):
    """(status, headers dict lower-cased, body) of a raw HTTP answer."""
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    return status, headers, body


def brute_topk(X, ids, q, k, exclude=()):
    """Exact top-k of integer-valued X against q: scores descending, ties by
    ascending id (ids compared as unsigned 64-bit integers)."""
    scores = X.astype(np.float64) @ np.asarray(q, dtype=np.float64)
    ex = set(int(e) for e in exclude)
    order = sorted((i for i in range(len(ids)) if int(ids[i]) not in ex),
                   key=lambda i: (-scores[i], int(ids[i])))
    return [(int(ids[i]), float(scores[i])) for i in order[:k]]


def hits(result_list):
    return [(h["id"], h["score"]) for h in result_list]


class ApiCase(unittest.TestCase):
    maxDiff = 4000

    def assertError(self, reply, status, code, *needles):
        """The status, the JSON error envelope with its code, and a message
        that names each of needles."""
        self.assertEqual(reply.status, status, reply)
        ctype = reply.header("Content-Type", "")
        self.assertTrue(ctype.startswith("application/json"),
                        "error reply Content-Type %r: %r" % (ctype, reply))
        try:
            obj = json.loads(reply.data)
        except ValueError:
            self.fail("error body is not JSON: %r" % (reply.data[:300],))
        self.assertIsInstance(obj, dict, reply)
        self.assertEqual(list(obj), ["error"], reply)
        err = obj["error"]
        self.assertIsInstance(err, dict, reply)
        self.assertEqual(err.get("code"), code, reply)
        msg = err.get("message")
        self.assertIsInstance(msg, str, reply)
        self.assertTrue(msg, reply)
        for n in needles:
            self.assertIn(n, msg, reply)
        return msg

    def assertClientError(self, ctx, status, code, *needles):
        """For `with self.assertRaises(FreshdError) as ctx` blocks."""
        e = ctx.exception
        self.assertEqual((e.status, e.code), (status, code), e)
        for n in needles:
            self.assertIn(n, e.message)

    def start(self, *args, **kw):
        """A daemon stopped (and checked) when the test ends."""
        d = Daemon(*args, **kw)
        self.addCleanup(d.cleanup)
        self.addCleanup(d.stop)
        return d


def metric_value(text, name, labels=None):
    """The value of one sample in Prometheus text, or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        sample, _, value = line.rpartition(" ")
        if "{" in sample:
            mname, _, rest = sample.partition("{")
            lab = {}
            for part in rest.rstrip("}").split(","):
                if part:
                    k, _, v = part.partition("=")
                    lab[k] = v.strip('"')
        else:
            mname, lab = sample, {}
        if mname != name:
            continue
        if labels is None or all(lab.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


def wait_until(pred, timeout=10.0, step=0.02):
    deadline = time.time() + timeout * SLOW
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            return v
        time.sleep(step)
