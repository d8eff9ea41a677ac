"""freshd --shards over three shard daemons, against one daemon over the
whole index: identical search ids and scores (bit for bit), identical
seeded samples and top-k negatives (logprobs within one float32 step),
updates routed to the shard that owns each target and checked in full
before any shard sees them, one refit on the coordinator published to
every shard, a shard that is down answered with 503 naming it and served
again after it restarts, and a shard put behind on its corrector version
brought back (no answer mixes versions); a new corrector is installed in
two phases, so searches do not wait for a shard to build it, and one that
a shard cannot build changes nothing."""

import http.client
import http.server
import os
import socket
import struct
import subprocess
import sys
import threading

import numpy as np

from harness import FreshdError, run
from support import ApiCase, TempDir, call, metric_value, save_index, sparse_ids, wait_until

N, D, S = 9000, 40, 3
SPLIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients",
                     "python", "examples", "split_index.py")


def bits(x):
    return struct.pack("<f", x)


def hits(reply):
    return [[(h["id"], bits(h["score"])) for h in row] for row in reply["results"]]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HoldingProxy:
    """A loopback HTTP/1.1 proxy in front of one shard that forwards every
    request, except that it holds a request to stage a checkpoint until
    released (arrived is set when one comes), or answers it 503 when
    refuse_stage is set: a shard slow or unable to build its model, at a
    point the test can see."""

    def __init__(self, port):
        self.arrived, self.release = threading.Event(), threading.Event()
        self.refuse_stage = False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "PUT" and "stage=true" in self.path:
                    proxy.arrived.set()
                    if proxy.refuse_stage:
                        return self.answer(503, b'{"error":{"code":"unavailable",'
                                                b'"message":"held by the test"}}',
                                           "application/json")
                    proxy.release.wait(120)
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "authorization")}
                conn.request(self.command, self.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                conn.close()
                self.answer(r.status, data, r.getheader("Content-Type") or "application/json")

            def answer(self, status, data, ctype):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class Shards(ApiCase):
    COMMON = ("--corrector", "affine", "--min-pairs", "64", "--refit-every-pairs", "0",
              "--refit-every-seconds", "0", "--normalize-output", "off")

    def setUp(self):
        self.tmp = TempDir.make(self)
        rng = np.random.default_rng(7)
        self.X = rng.standard_normal((N, D)).astype(np.float32)
        self.ids = sparse_ids(N, 3)  # two ids above 2^63
        ipath, jpath = save_index(self.tmp, self.X, self.ids, name="all")
        self.whole = self.start("--index", ipath, "--ids", jpath, *self.COMMON)
        # Shards by id range, cut as an operator would.
        out = subprocess.run([sys.executable, SPLIT, "--parts", str(S), "--ids", jpath, ipath,
                              os.path.join(self.tmp, "parts")],
                             capture_output=True, text=True, check=True).stdout
        self.assertEqual(out.count("rows"), S)
        self.parts, self.ports, self.shards = [], [], []
        for s in range(S):
            p = os.path.join(self.tmp, "parts", "part-%d" % s)
            self.parts.append((p + ".npy", p + "_ids.npy"))
            self.ports.append(free_port())
            self.shards.append(self.start_shard(s))
        self.coord = self.start("--shards", ",".join(d.url for d in self.shards))
        self.assertTrue(wait_until(lambda: call(self.coord, "GET", "/readyz").status == 200,
                                   timeout=30), call(self.coord, "GET", "/readyz"))

    def start_shard(self, s, data_dir=None):
        ipath, jpath = self.parts[s]
        kw = {"data_dir": data_dir} if data_dir else {}
        return self.start("--shard", "--index", ipath, "--ids", jpath, *self.COMMON,
                          "--listen", "127.0.0.1:%d" % self.ports[s], **kw)

    def queries(self, b, seed):
        rng = np.random.default_rng(seed)
        rows = rng.integers(0, N, b)
        return (self.X[rows] + 0.3 * rng.standard_normal((b, D))).astype(np.float32), rows

    def same(self, fn, logprob=False):
        a, b = fn(self.whole.client), fn(self.coord.client)
        self.assertEqual(a["corrector_version"], b["corrector_version"])
        self.assertEqual(hits(a), hits(b))
        if logprob:
            for ra, rb in zip(a["results"], b["results"]):
                for ha, hb in zip(ra, rb):
                    self.assertLessEqual(abs(ha["logprob"] - hb["logprob"]),
                                         2.0 ** -20 * max(1.0, abs(ha["logprob"])), (ha, hb))
        return b

    def compare(self):
        Q, rows = self.queries(24, 5)
        pos = [[int(self.ids[r])] for r in rows]
        excl = [[int(self.ids[r]), int(self.ids[(r + 1) % N])] if i % 2 else []
                for i, r in enumerate(rows)]
        for scoring in ("stale", "corrected"):
            for k in (1, 10, 200):
                r = self.same(lambda c: c.search(Q, k=k, scoring=scoring))
                self.assertEqual(len(r["results"][0]), k)
            self.same(lambda c: c.search(Q, k=10, exclude=excl, scoring=scoring))
            self.same(lambda c: c.negatives(Q, positives=pos, n=20, method="topk",
                                            scoring=scoring), logprob=True)
            for seed in (1, 2):
                self.same(lambda c: c.negatives(Q, positives=pos, n=20, method="sample",
                                                seed=seed, temperature=0.7,
                                                scoring=scoring), logprob=True)
        # The ids above 2^63 are served and found.
        big = [i for i in range(N) if int(self.ids[i]) >= 2 ** 63]
        r = self.same(lambda c: c.search(self.X[big], k=1, scoring="stale"))
        self.assertEqual([row[0]["id"] for row in r["results"]], [int(self.ids[i]) for i in big])

    def drift(self, seed=5):
        rng = np.random.default_rng(seed)
        M = (np.eye(D) + 0.3 * rng.standard_normal((D, D))).astype(np.float32)
        rows = np.arange(0, N, 5)
        return rows, (self.X[rows] @ M.T).astype(np.float32)

    def buffered(self, d):
        return d.client.corrector()["pairs"]["buffered"]

    def test_answers_equal_one_daemon(self):
        info = self.coord.client.info()
        self.assertEqual(info["targets"], N)
        self.assertEqual(info["dim"], D)
        self.assertEqual([s["ready"] for s in info["shards"]], [True] * S)
        self.compare()
        text = self.coord.client.metrics()
        for d in self.shards:
            self.assertEqual(metric_value(text, "freshd_shard_up", {"shard": d.url}), 1.0)
        self.assertGreater(metric_value(text, "freshd_http_requests_total",
                                        {"endpoint": "search", "code": "200"}), 0)

    def test_updates_routed_refit_published_everywhere(self):
        rows, G = self.drift()
        ids = [int(self.ids[r]) for r in rows]
        ack = self.coord.client.update(ids, G, step=3)
        self.assertEqual(ack["accepted"], len(ids))
        owned = [0] * S
        for r in rows:
            for s in range(S):
                if int(self.ids[r]) in set(np.load(self.parts[s][1]).tolist()):
                    owned[s] += 1
        self.assertEqual([self.buffered(d) for d in self.shards], owned)
        self.assertEqual(self.coord.client.corrector()["pairs"]["buffered"], len(ids))
        # A shard does not refit by itself; the coordinator does.
        with self.assertRaises(FreshdError) as ctx:
            self.shards[0].client.refit(wait=True)
        self.assertClientError(ctx, 409, "conflict", "shard")
        r = self.coord.client.refit(wait=True)
        self.assertTrue(r["accepted"], r)
        self.assertEqual(r["version"], 1)
        self.assertEqual([d.client.corrector()["version"] for d in self.shards], [1] * S)
        self.assertLess(r["holdout"]["corrected_mse"], 0.5 * r["holdout"]["stale_mse"])
        # The same corrector in the whole daemon: the same answers.
        self.whole.client.put_checkpoint(self.coord.client.checkpoint())
        self.compare()
        # Corrected vectors come from the owning shards, in order.
        want = self.whole.client.corrected(ids[:50])
        got = self.coord.client.corrected(ids[:50])
        self.assertEqual(want, got)
        t = self.coord.client.target(ids[7])
        self.assertEqual(np.array(t["fresh"], dtype=np.float32).tobytes(), G[7].tobytes())

    def test_bad_updates_reach_no_shard(self):
        rows, G = self.drift()
        ids = [int(self.ids[r]) for r in rows[:30]]
        before = [self.buffered(d) for d in self.shards]
        with self.assertRaises(FreshdError) as ctx:
            self.coord.client.update(ids + [12], np.vstack([G[:30], G[:1]]))
        self.assertClientError(ctx, 404, "not_found", "targets[30].id", "12")
        reply = call(self.coord, "POST", "/v1/updates",
                     {"targets": [{"id": ids[0], "vector": [0.5] * (D - 1)}]})
        self.assertError(reply, 400, "invalid_argument", "targets[0].vector", str(D))
        reply = call(self.coord, "POST", "/v1/negatives",
                     {"vectors": [[0.1] * D], "positives": [[12]], "n": 4})
        self.assertError(reply, 404, "not_found", "positives[0][0]", "12")
        self.assertEqual([self.buffered(d) for d in self.shards], before)

    def test_shard_down_is_503_and_recovers(self):
        rows, G = self.drift()
        self.coord.client.update([int(self.ids[r]) for r in rows], G)
        self.assertTrue(self.coord.client.refit(wait=True)["accepted"])
        Q, _ = self.queries(4, 9)
        want = hits(self.coord.client.search(Q, k=10))
        victim = self.shards[1]
        url = victim.url
        victim.stop()
        reply = call(self.coord, "POST", "/v1/search", {"vectors": Q.tolist(), "k": 10})
        self.assertError(reply, 503, "shard_unavailable", url)
        self.assertTrue(wait_until(lambda: call(self.coord, "GET", "/readyz").status == 503))
        self.assertError(call(self.coord, "GET", "/readyz"), 503, "shard_unavailable", url)
        # Restarted on its data dir: its pairs and corrector are back.
        self.shards[1] = self.start_shard(1, data_dir=victim.data_dir)
        self.assertTrue(wait_until(lambda: call(self.coord, "GET", "/readyz").status == 200,
                                   timeout=30))
        r = self.coord.client.search(Q, k=10)
        self.assertEqual(r["corrector_version"], 1)
        self.assertEqual(hits(r), want)

    def test_shard_behind_is_brought_forward(self):
        rows, G = self.drift()
        self.coord.client.update([int(self.ids[r]) for r in rows], G)
        old = self.coord.client.checkpoint()
        self.assertTrue(self.coord.client.refit(wait=True)["accepted"])
        Q, _ = self.queries(4, 11)
        want = hits(self.coord.client.search(Q, k=10))
        # Someone installs an older corrector on one shard directly.
        self.shards[2].client.put_checkpoint(old, force=True)
        self.assertEqual(self.shards[2].client.corrector()["version"], 0)
        # No answer mixes versions: each is version 1, equal to before.
        for _ in range(5):
            r = self.coord.client.search(Q, k=10)
            self.assertEqual(r["corrector_version"], 1)
            self.assertEqual(hits(r), want)
        self.assertTrue(wait_until(
            lambda: self.shards[2].client.corrector()["version"] == 1, timeout=15))

    def test_install_does_not_hold_searches(self):
        """A refit installs in two phases: while one shard still builds the
        new corrector (its stage held by a proxy), searches through the
        coordinator are answered at once, by the old version everywhere;
        after the commit, by the new one everywhere."""
        proxy = HoldingProxy(self.ports[0])
        self.addCleanup(proxy.close)
        coord = self.start("--shards", ",".join([proxy.url] + [d.url for d in self.shards[1:]]))
        self.assertTrue(wait_until(lambda: call(coord, "GET", "/readyz").status == 200,
                                   timeout=30), call(coord, "GET", "/readyz"))
        rows, G = self.drift()
        coord.client.update([int(self.ids[r]) for r in rows], G)
        Q, _ = self.queries(6, 13)
        before = coord.client.search(Q, k=10)
        self.assertEqual(before["corrector_version"], 0)
        out = {}
        t = threading.Thread(target=lambda: out.update(coord.client.refit(wait=True)))
        t.start()
        self.assertTrue(proxy.arrived.wait(60), "no shard was asked to stage")
        for _ in range(3):
            r = coord.client.search(Q, k=10)
            self.assertEqual(r["corrector_version"], 0)
            self.assertEqual(hits(r), hits(before))
        self.assertEqual([d.client.corrector()["version"] for d in self.shards], [0] * S)
        proxy.release.set()
        t.join(120)
        self.assertTrue(out.get("accepted"), out)
        self.assertEqual(out["version"], 1)
        self.assertEqual([d.client.corrector()["version"] for d in self.shards], [1] * S)
        self.assertEqual(coord.client.search(Q, k=10)["corrector_version"], 1)

    def test_install_that_a_shard_cannot_stage_changes_nothing(self):
        """A shard that cannot build the new corrector fails the refit
        before any shard serves it: every shard stays on the old version
        (none is left ahead for the health check to push on the others)."""
        proxy = HoldingProxy(self.ports[0])
        proxy.refuse_stage = True
        self.addCleanup(proxy.close)
        coord = self.start("--shards", ",".join([proxy.url] + [d.url for d in self.shards[1:]]))
        self.assertTrue(wait_until(lambda: call(coord, "GET", "/readyz").status == 200,
                                   timeout=30))
        rows, G = self.drift()
        coord.client.update([int(self.ids[r]) for r in rows], G)
        r = coord.client.refit(wait=True)
        self.assertFalse(r["accepted"], r)
        self.assertIn("could not stage version 1", r["reason"])
        self.assertIn(proxy.url, r["reason"])
        self.assertEqual([d.client.corrector()["version"] for d in self.shards], [0] * S)
        # The shards that had staged it dropped it: nothing is left to drop.
        for d in self.shards:
            self.assertEqual(call(d, "DELETE", "/v1/corrector/checkpoint/staged").json(),
                             {"dropped": False})
        self.assertEqual(coord.client.search(self.queries(2, 3)[0], k=5)["corrector_version"], 0)
        # Through the coordinator, an installed checkpoint: the same.
        ckpt = self.shards[1].client.checkpoint()
        reply = call(coord, "PUT", "/v1/corrector/checkpoint?force=true", ckpt,
                     headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(reply.status, 503, reply)
        self.assertIn(proxy.url, str(reply.json()))
        proxy.refuse_stage = False
        proxy.release.set()
        reply = call(coord, "PUT", "/v1/corrector/checkpoint?force=true", ckpt,
                     headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(reply.status, 200, reply)
        self.assertEqual(reply.json(), {"version": 0, "staged": False})


class ShardsMlp(Shards):
    """The same with an MLP corrector: each shard materializes h(S) over
    its own rows, and a row's bits do not depend on where the index was
    cut."""
    COMMON = ("--corrector", "mlp", "--hidden", "16", "--min-pairs", "64",
              "--refit-every-pairs", "0", "--refit-every-seconds", "0",
              "--normalize-output", "off")


if __name__ == "__main__":
    run()
