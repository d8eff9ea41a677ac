"""Keys: --api-key-file (everything) and --read-key-file (GET /v1/*, search
and negatives). Without a valid key every /v1 path is 401, even unknown
ones and wrong methods; a write with the read key is 403 and changes
nothing; probes and /metrics stay open."""

import os
import shutil
import tempfile


from harness import run
from support import ApiCase, Daemon, call, index_args, int_matrix, save_index

N, D = 200, 8
WRITE_KEY = "w-Secret-0123456789"
READ_KEY = "r-Reader-9876543210"
V = [1.0] * D


class Auth(ApiCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="freshd-it-files-")
        X = int_matrix(N, D, seed=51)
        cls.ipath, _ = save_index(cls.dir, X)
        wk = os.path.join(cls.dir, "write.key")
        rk = os.path.join(cls.dir, "read.key")
        with open(wk, "w") as f:
            f.write("  %s  \n# not part of the key\n" % WRITE_KEY)   # first line, trimmed
        with open(rk, "w") as f:
            f.write(READ_KEY + "\n")
        cls.d = Daemon(*index_args(cls.ipath, None, "--api-key-file", wk, "--read-key-file", rk,
                                   "--hidden", "8"), api_key=WRITE_KEY)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.stop()
        finally:
            cls.d.cleanup()
            shutil.rmtree(cls.dir, True)

    REQUESTS = [
        ("GET", "/v1/info", None),
        ("GET", "/v1/corrector", None),
        ("GET", "/v1/corrector/checkpoint", None),
        ("GET", "/v1/targets/3", None),
        ("GET", "/v1/targets/999999", None),
        ("POST", "/v1/search", {"vector": V}),
        ("POST", "/v1/search", "not json"),
        ("POST", "/v1/negatives", {"vector": V, "n": 2}),
        ("POST", "/v1/corrected", {"ids": [1]}),
        ("POST", "/v1/updates", {"targets": [{"id": 1, "vector": V}]}),
        ("POST", "/v1/refit", None),
        ("POST", "/v1/corrector/reset", None),
        ("PUT", "/v1/corrector/checkpoint", b"xx"),
        ("DELETE", "/v1/pairs", None),
        ("POST", "/v1/index/reload", {"path": "x.npy"}),
        ("GET", "/v1/no-such-path", None),
        ("POST", "/v1/no-such-path", {}),
        ("GET", "/v1/search", None),           # wrong method
        ("DELETE", "/v1/info", None),          # wrong method
        ("GET", "/v1/", None),
    ]

    def test_no_key_is_401_everywhere_under_v1(self):
        for headers in ({}, {"Authorization": "Bearer wrong"},
                        {"Authorization": "Bearer " + WRITE_KEY + "x"},
                        {"Authorization": "Bearer " + WRITE_KEY[:-1]},
                        {"Authorization": "Basic " + WRITE_KEY},
                        {"Authorization": WRITE_KEY},
                        {"Authorization": "Bearer "}):
            for method, path, body in self.REQUESTS:
                with self.subTest(headers=headers, method=method, path=path):
                    r = call(self.d, method, path, body, headers=headers)
                    self.assertError(r, 401, "unauthorized")

    def test_probes_and_metrics_stay_open(self):
        for path in ("/healthz", "/readyz", "/metrics"):
            r = call(self.d, "GET", path)
            self.assertEqual(r.status, 200, (path, r))

    def test_read_key(self):
        c = self.d.client
        before = c.corrector()
        ok = [
            ("GET", "/v1/info", None),
            ("GET", "/v1/corrector", None),
            ("GET", "/v1/corrector/checkpoint", None),
            ("GET", "/v1/targets/3", None),
            ("POST", "/v1/search", {"vector": V, "k": 3}),
            ("POST", "/v1/negatives", {"vector": V, "n": 2}),
        ]
        for method, path, body in ok:
            with self.subTest(method=method, path=path):
                r = call(self.d, method, path, body, key=READ_KEY)
                self.assertEqual(r.status, 200, r)
        r = call(self.d, "POST", "/v1/search", {"vector": V, "k": 3}, key=READ_KEY)
        self.assertEqual(len(r.json()["results"][0]), 3)
        # Errors behind the read key are the endpoint's own.
        self.assertError(call(self.d, "GET", "/v1/targets/999999", key=READ_KEY), 404, "not_found",
                         "999999")
        writes = [
            ("POST", "/v1/updates", {"targets": [{"id": 1, "vector": V}]}),
            ("POST", "/v1/refit", None),
            ("POST", "/v1/refit?wait=true", None),
            ("POST", "/v1/corrector/reset", None),
            ("PUT", "/v1/corrector/checkpoint", c.checkpoint()),
            ("DELETE", "/v1/pairs", None),
        ]
        for method, path, body in writes:
            with self.subTest(method=method, path=path):
                r = call(self.d, method, path, body, key=READ_KEY,
                         headers={"Content-Type": "application/octet-stream"}
                         if isinstance(body, bytes) else None)
                self.assertError(r, 403, "forbidden")
        after = c.corrector()
        self.assertEqual(after["version"], before["version"])
        self.assertEqual(after["pairs"], before["pairs"])
        self.assertIsNone(c.target(1)["fresh"])

    def test_write_key(self):
        c = self.d.client
        ack = c.update([1, 2], [V, V], step=1)
        self.assertEqual(ack["accepted"], 2)
        self.assertEqual(c.target(1)["fresh_step"], 1)
        v = c.reset()["version"]
        self.assertEqual(c.corrector()["version"], v)
        r = call(self.d, "DELETE", "/v1/pairs", key=WRITE_KEY)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(c.corrector()["pairs"]["buffered"], 0)


class KeyFiles(ApiCase):
    def test_empty_key_refuses_to_start(self):
        tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, tmp, True)
        ip, _ = save_index(tmp, int_matrix(N, D, seed=52))
        for name, content in (("empty.key", ""), ("blank.key", "   \n\n")):
            path = os.path.join(tmp, name)
            with open(path, "w") as f:
                f.write(content)
            for flag in ("--api-key-file", "--read-key-file"):
                with self.subTest(file=name, flag=flag):
                    args = [flag, path]
                    if flag == "--read-key-file":
                        good = os.path.join(tmp, "good.key")
                        with open(good, "w") as f:
                            f.write("k\n")
                        args += ["--api-key-file", good]
                    d = Daemon(*index_args(ip), *args, start=False)
                    try:
                        with self.assertRaises(RuntimeError) as ctx:
                            d.start()
                        self.assertNotEqual(d.proc.returncode, 0)
                        self.assertIn(name, str(ctx.exception))
                    finally:
                        if d.proc is not None and d.proc.poll() is None:
                            d.stop(check=False)
                        else:
                            d.stderr.close()
                            os.unlink(d.stderr_path)
                        d.cleanup()


if __name__ == "__main__":
    run()
