"""Every error of the contract's table: the status, the JSON envelope's code,
a message that names the field and index, the Allow header of 405, body
limits enforced before the body is read, content types; and that a failed
request changes nothing."""

import json
import shutil
import tempfile

import numpy as np

from harness import run
from support import (SLOW, ApiCase, Daemon, b64, call, index_args, int_matrix, parse_raw,
                     raw_exchange, save_index)

N, D = 300, 8
V = [1.0] * D
MAX_QUERIES = 5


def nest(depth):
    """An object whose value nests arrays so the document is depth deep."""
    return '{"vector": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


class Errors(ApiCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="freshd-it-files-")
        cls.X = int_matrix(N, D, seed=41)
        cls.ipath, _ = save_index(cls.dir, cls.X)
        cls.d = Daemon(*index_args(cls.ipath, None, "--max-queries", str(MAX_QUERIES),
                                   "--max-body", "100K", "--hidden", "8"))

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.stop()
        finally:
            cls.d.cleanup()
            shutil.rmtree(cls.dir, True)

    def post(self, path, body, **kw):
        return call(self.d, "POST", path, body, **kw)

    # -- 400 invalid_json --------------------------------------------------
    def test_invalid_json(self):
        bodies = [
            "not json",
            "",
            '{"vector": [1, 2',
            '{"k": 1} trailing',
            "[1, 2]",
            '[{"vector": %s}]' % json.dumps(V),
            '"a string"',
            "42",
            "null",
            '{"vector": %s, "vector": %s}' % (json.dumps(V), json.dumps(V)),
            '{"k": 3, "k": 3, "vector": %s}' % json.dumps(V),
            '{"vector": [NaN, 1, 1, 1, 1, 1, 1, 1]}',
            '{"vector": [Infinity, 1, 1, 1, 1, 1, 1, 1]}',
            '{"vector": [-Infinity, 1, 1, 1, 1, 1, 1, 1]}',
            '{"vector": [1e999, 1, 1, 1, 1, 1, 1, 1]}',
            '{"vector": [-1e999, 1, 1, 1, 1, 1, 1, 1]}',
            nest(33),
            nest(100),
            b'{"vector": [1, 1, 1, 1, 1, 1, 1, 1], "scoring": "\xff\xfe"}',
        ]
        for path in ("/v1/search", "/v1/negatives", "/v1/updates", "/v1/corrected"):
            for body in bodies:
                with self.subTest(path=path, body=body[:40]):
                    self.assertError(self.post(path, body), 400, "invalid_json")

    def test_nesting_of_32_is_parsed(self):
        # 32 levels parse; the document is then refused for its content.
        r = self.post("/v1/search", nest(32))
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["error"]["code"], "invalid_argument")

    # -- 400 invalid_argument ----------------------------------------------
    def test_invalid_argument_search(self):
        short = [1.0, 2.0, 3.0]
        cases = [
            ({}, ["vector"]),
            ({"k": 3}, ["vector"]),
            ({"vector": "abc"}, ["vector"]),
            ({"vector": 5}, ["vector"]),
            ({"vector": [1, "x", 1, 1, 1, 1, 1, 1]}, ["vector"]),
            ({"vector": [1, None, 1, 1, 1, 1, 1, 1]}, ["vector"]),
            ({"vectors": [V, "x"]}, ["vectors[1]"]),
            ({"vectors": [V, short]}, ["vectors[1]: 3 numbers, expected 8"]),
            ({"vector": short}, ["vector: 3 numbers, expected 8"]),
            ({"vectors": [V, [1e39] + V[1:]]}, ["vectors[1]"]),
            ({"vector": V[:7] + [-1e39]}, ["vector"]),
            ({"vector": V, "k": 0}, ["k"]),
            ({"vector": V, "k": 1001}, ["k"]),
            ({"vector": V, "k": -1}, ["k"]),
            ({"vector": V, "k": "5"}, ["k"]),
            ({"vector": V, "k": 2.5}, ["k"]),
            ({"vector": V, "k": True}, ["k"]),
            ({"vector_b64": "!!!notbase64"}, ["vector_b64"]),
            ({"vector_b64": b64(np.ones(7))}, ["vector_b64"]),
            ({"vectors_b64": [b64(np.ones(D)), b64(np.ones(3))]}, ["vectors_b64[1]"]),
            ({"vectors_b64": [b64(np.ones(D)), "%%%"]}, ["vectors_b64[1]"]),
            ({"vector": V, "vectors": [V]}, ["vector"]),
            ({"vector": V, "vector_b64": b64(np.ones(D))}, ["vector"]),
            ({"vectors": [V], "vectors_b64": [b64(np.ones(D))]}, ["vectors"]),
            ({"vector": V, "vectors_b64": [b64(np.ones(D))]}, ["vector"]),
            ({"vectors": []}, ["vectors"]),
            ({"vectors_b64": []}, ["vectors_b64"]),
            ({"vectors": [V] * (MAX_QUERIES + 1)}, ["vectors", str(MAX_QUERIES)]),
            ({"vectors": [V, V], "exclude": [[1]]}, ["exclude"]),
            ({"vectors": [V, V], "exclude": [[1], [2], [3]]}, ["exclude"]),
            ({"vector": V, "exclude": [1, 2]}, ["exclude"]),
            ({"vector": V, "exclude": [["a"]]}, ["exclude[0]"]),
            ({"vector": V, "exclude": [[-1]]}, ["exclude[0]"]),
            ({"vector": V, "bogus": 1}, ["bogus"]),
            ({"vector": V, "scoring": "fancy"}, ["scoring"]),
        ]
        for body, needles in cases:
            with self.subTest(body=json.dumps(body)[:80]):
                self.assertError(self.post("/v1/search", body), 400, "invalid_argument", *needles)

    def test_invalid_argument_negatives(self):
        cases = [
            ({"vector": V, "n": 0}, ["n"]),
            ({"vector": V, "n": "3"}, ["n"]),
            ({"vector": V, "method": "best"}, ["method"]),
            ({"vector": V, "method": "sample", "temperature": 0}, ["temperature"]),
            ({"vector": V, "method": "sample", "temperature": -1}, ["temperature"]),
            ({"vector": V, "seed": "x"}, ["seed"]),
            ({"vectors": [V, V], "positives": [[1]]}, ["positives"]),
            ({"vector": V, "positives": [1]}, ["positives"]),
            ({"vectors": [V, V[:5]]}, ["vectors[1]: 5 numbers, expected 8"]),
            ({"vector": V, "surprise": True}, ["surprise"]),
        ]
        for body, needles in cases:
            with self.subTest(body=json.dumps(body)[:80]):
                self.assertError(self.post("/v1/negatives", body), 400, "invalid_argument", *needles)

    def test_invalid_argument_updates(self):
        good = {"id": 1, "vector": V}
        cases = [
            ({}, ["targets"]),
            ({"targets": []}, ["targets"]),
            ({"targets": "x"}, ["targets"]),
            ({"targets": [good, {"vector": V}]}, ["targets[1]", "id"]),
            ({"targets": [good, {"id": 2}]}, ["targets[1]"]),
            ({"targets": [good, {"id": "2", "vector": V}]}, ["targets[1]", "id"]),
            ({"targets": [good, {"id": -2, "vector": V}]}, ["targets[1]", "id"]),
            ({"targets": [good, {"id": 2 ** 64, "vector": V}]}, ["targets[1]", "id"]),
            ({"targets": [good, {"id": 2, "vector": V[:3]}]}, ["targets[1]", "3 numbers, expected 8"]),
            ({"targets": [good, {"id": 2, "vector": V[:7] + [1e39]}]}, ["targets[1]"]),
            ({"targets": [good, {"id": 2, "vector_b64": "@@"}]}, ["targets[1]"]),
            ({"targets": [good, {"id": 2, "vector": V, "vector_b64": b64(np.ones(D))}]},
             ["targets[1]"]),
            ({"targets": [good], "queries": [{"vector": V, "positive": 2}]}, ["queries[0]", "positive"]),
            ({"targets": [good], "queries": [{"vector": V}]}, ["queries[0]", "positive"]),
            ({"targets": [good], "queries": [{"vector": V[:2], "positive": 1}]}, ["queries[0]"]),
            ({"targets": [good], "queries": {"vector": V}}, ["queries"]),
            ({"targets": [good], "step": "x"}, ["step"]),
            ({"targets": [good], "step": -1}, ["step"]),
            ({"targets": [good], "extra": 1}, ["extra"]),
            ({"targets": [dict(good, colour="red")]}, ["colour"]),
        ]
        for body, needles in cases:
            with self.subTest(body=json.dumps(body)[:80]):
                self.assertError(self.post("/v1/updates", body), 400, "invalid_argument", *needles)

    def test_invalid_argument_corrected(self):
        cases = [
            ({}, ["ids"]),
            ({"ids": "1"}, ["ids"]),
            ({"ids": [1, "2"]}, ["ids[1]"]),
            ({"ids": list(range(MAX_QUERIES + 1))}, ["ids"]),
        ]
        for body, needles in cases:
            with self.subTest(body=json.dumps(body)[:80]):
                self.assertError(self.post("/v1/corrected", body), 400, "invalid_argument", *needles)

    def test_checkpoint_damaged_is_400(self):
        for junk in (b"", b"\x00" * 64, b"freshd" * 40):
            r = call(self.d, "PUT", "/v1/corrector/checkpoint", junk,
                     headers={"Content-Type": "application/octet-stream"})
            self.assertError(r, 400, "invalid_argument")

    # -- 404 ---------------------------------------------------------------
    def test_not_found(self):
        for method, path in (("GET", "/nope"), ("GET", "/v1/nope"), ("POST", "/v1/nope"),
                             ("GET", "/v1"), ("GET", "/v1/search/extra"), ("GET", "/index.html"),
                             ("GET", "/v1/targets/"), ("GET", "/v1/targets/5/more")):
            with self.subTest(method=method, path=path):
                self.assertError(call(self.d, method, path, {} if method == "POST" else None),
                                 404, "not_found")
        self.assertError(call(self.d, "GET", "/v1/targets/%d" % (N + 17)), 404, "not_found", str(N + 17))
        self.assertError(call(self.d, "GET", "/v1/targets/%d" % (2 ** 64 - 1)), 404, "not_found",
                         str(2 ** 64 - 1))
        r = self.post("/v1/updates", {"targets": [{"id": 1, "vector": V}, {"id": 5000, "vector": V}]})
        self.assertError(r, 404, "not_found", "5000", "targets[1]")
        r = self.post("/v1/negatives", {"vectors": [V, V], "positives": [[1], [2, 7777]]})
        self.assertError(r, 404, "not_found", "7777")
        r = self.post("/v1/corrected", {"ids": [3, 9999]})
        self.assertError(r, 404, "not_found", "9999")
        # An unknown id in exclude just excludes nothing.
        r = self.post("/v1/search", {"vector": V, "exclude": [[123456]]})
        self.assertEqual(r.status, 200, r)

    # -- 405 ---------------------------------------------------------------
    def test_method_not_allowed(self):
        cases = [
            ("GET", "/v1/search", {"POST"}),
            ("PUT", "/v1/search", {"POST"}),
            ("GET", "/v1/negatives", {"POST"}),
            ("GET", "/v1/updates", {"POST"}),
            ("DELETE", "/v1/info", {"GET"}),
            ("POST", "/v1/corrector", {"GET"}),
            ("GET", "/v1/refit", {"POST"}),
            ("GET", "/v1/corrector/reset", {"POST"}),
            ("POST", "/v1/corrector/checkpoint", {"GET", "PUT"}),
            ("PUT", "/v1/pairs", {"DELETE", "GET"}),
            ("DELETE", "/v1/targets/5", {"GET"}),
            ("GET", "/v1/corrected", {"POST"}),
            ("POST", "/healthz", {"GET"}),
            ("POST", "/metrics", {"GET"}),
        ]
        for method, path, allowed in cases:
            with self.subTest(method=method, path=path):
                r = call(self.d, method, path, {} if method in ("POST", "PUT") else None)
                self.assertError(r, 405, "method_not_allowed")
                allow = r.header("Allow")
                self.assertIsNotNone(allow, "no Allow header")
                got = {m.strip() for m in allow.split(",") if m.strip()}
                self.assertEqual(got - {"HEAD"}, allowed)

    # -- 413 ---------------------------------------------------------------
    def test_body_over_max_body(self):
        big = '{"vector": %s%s}' % (json.dumps(V), " " * (110 * 1024))
        self.assertError(self.post("/v1/search", big), 413, "payload_too_large")
        self.assertError(self.post("/v1/updates", big), 413, "payload_too_large")
        # Just under the limit is parsed.
        ok = '{"vector": %s%s}' % (json.dumps(V), " " * (90 * 1024))
        self.assertEqual(self.post("/v1/search", ok).status, 200)

    def test_huge_content_length_refused_before_reading(self):
        head = ("POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/json\r\nContent-Length: 2147483648\r\n\r\n").encode()
        out, secs = raw_exchange(self.d, head, timeout=5.0)
        self.assertTrue(out, "no answer to a 2 GB Content-Length")
        status, headers, body = parse_raw(out)
        self.assertEqual(status, 413, out[:300])
        self.assertEqual(json.loads(body)["error"]["code"], "payload_too_large")
        self.assertLess(secs, 2.0 * SLOW)
        # The server still serves.
        self.assertEqual(self.post("/v1/search", {"vector": V}).status, 200)

    def test_chunked_body_over_max_body(self):
        # BUG: the connection is closed without any answer instead of 413.
        # The body passes the 100 KiB limit by 100 bytes and then stops (no
        # final chunk), so a server that answers 413 has read everything
        # that was sent and the answer cannot be lost to a reset.
        total = 100 * 1024 + 100
        pieces = [8192] * (total // 8192) + [total % 8192]
        data = ("POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
        data += b"".join(b"%x\r\n%s\r\n" % (n, b" " * n) for n in pieces if n)
        out, secs = raw_exchange(self.d, data, timeout=5.0)
        self.assertTrue(out, "connection closed without an answer after %.2fs" % secs)
        status, headers, body = parse_raw(out)
        self.assertEqual(status, 413, out[:300])
        self.assertEqual(json.loads(body)["error"]["code"], "payload_too_large")

    def test_small_chunked_body_is_accepted(self):
        body = json.dumps({"vector": V, "k": 3}).encode()
        data = ("POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
        data += b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        out, _ = raw_exchange(self.d, data)
        status, _, payload = parse_raw(out)
        self.assertEqual(status, 200, out[:300])
        self.assertEqual(len(json.loads(payload)["results"][0]), 3)

    # -- 431 ---------------------------------------------------------------
    def test_oversized_headers(self):
        # BUG: 431 comes with libmicrohttpd's HTML page, not the JSON envelope.
        data = ("GET /v1/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: %s\r\n\r\n"
                % ("a" * 200000)).encode()
        out, _ = raw_exchange(self.d, data)
        self.assertTrue(out, "no answer to oversized headers")
        status, headers, body = parse_raw(out)
        self.assertEqual(status, 431, out[:300])
        self.assertTrue(headers.get("content-type", "").startswith("application/json"), out[:300])
        self.assertIn("error", json.loads(body))

    # -- 415 ---------------------------------------------------------------
    def test_content_types(self):
        body = json.dumps({"vector": V, "k": 2})
        for ctype in ("text/plain", "application/xml", "multipart/form-data; boundary=x",
                      "application/octet-stream", "text/json"):
            with self.subTest(ctype=ctype):
                r = self.post("/v1/search", body, headers={"Content-Type": ctype})
                self.assertError(r, 415, "unsupported_media_type")
        r = self.post("/v1/updates", json.dumps({"targets": [{"id": 1, "vector": V}]}),
                      headers={"Content-Type": "text/plain"})
        self.assertError(r, 415, "unsupported_media_type")
        for ctype in ("application/json", "application/json; charset=utf-8", "Application/JSON",
                      "application/x-www-form-urlencoded", None):
            with self.subTest(ctype=ctype):
                r = self.post("/v1/search", body, headers={"Content-Type": ctype})
                self.assertEqual(r.status, 200, r)
                self.assertEqual(len(r.json()["results"][0]), 2)


class FailedRequestsChangeNothing(ApiCase):
    def test_failed_updates_keep_state(self):
        tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, tmp, True)
        X = int_matrix(N, D, seed=42)
        ip, _ = save_index(tmp, X)
        d = self.start(*index_args(ip, None, "--max-body", "100K", "--hidden", "8"))
        c = d.client
        F = X * 2 + 1
        c.update(list(range(100)), F[:100], step=5)
        self.assertTrue(c.refit(wait=True)["accepted"])
        before = c.corrector()
        t_before = [c.target(i) for i in (0, 150, 151)]
        Q = np.ones((2, D), dtype=np.float32)
        s_before = c.search(Q, k=20)
        bad_updates = [
            # a good target, then an unknown one: all-or-nothing
            {"targets": [{"id": 150, "vector": V}, {"id": 10 ** 6, "vector": V}], "step": 9},
            # a good target (newer step), then a bad vector
            {"targets": [{"id": 0, "vector": V}, {"id": 151, "vector": V[:3]}], "step": 9},
            {"targets": [{"id": 150, "vector": V}, {"id": 151, "vector": V[:7] + [1e39]}]},
            {"targets": [{"id": 150, "vector": V}], "queries": [{"vector": V, "positive": 151}]},
            {"targets": [{"id": 150, "vector": V}], "unknown": 1},
            {"targets": [{"id": 150, "vector": V}], "step": "late"},
        ]
        for body in bad_updates:
            r = call(d, "POST", "/v1/updates", body)
            self.assertIn(r.status, (400, 404), r)
        raw = [
            '{"targets": [{"id": 150, "vector": %s}], "targets": []}' % json.dumps(V),
            '{"targets": [{"id": 150, "vector": [NaN,1,1,1,1,1,1,1]}]}',
            '{"targets": [{"id": 150, "vector": %s}]}%s' % (json.dumps(V), " " * (110 << 10)),
        ]
        for body in raw:
            r = call(d, "POST", "/v1/updates", body)
            self.assertIn(r.status, (400, 413), r)
        r = call(d, "POST", "/v1/updates", json.dumps({"targets": [{"id": 150, "vector": V}]}),
                 headers={"Content-Type": "text/plain"})
        self.assertEqual(r.status, 415)
        # Other failing writes.
        self.assertEqual(call(d, "PUT", "/v1/corrector/checkpoint", b"junk",
                              headers={"Content-Type": "application/octet-stream"}).status, 400)
        self.assertEqual(call(d, "PUT", "/v1/pairs").status, 405)
        self.assertEqual(c.corrector(), before)
        self.assertEqual([c.target(i) for i in (0, 150, 151)], t_before)
        self.assertEqual(c.search(Q, k=20), s_before)
        # And after a restart, nothing of the failed requests was logged.
        d.stop()
        d2 = self.start(*index_args(ip, None, "--hidden", "8"), data_dir=d.data_dir)
        after = d2.client.corrector()
        self.assertEqual(after["pairs"], before["pairs"])
        if "last_seq" in before:
            self.assertEqual(after["last_seq"], before["last_seq"])
        self.assertEqual([d2.client.target(i) for i in (0, 150, 151)], t_before)


if __name__ == "__main__":
    run()
