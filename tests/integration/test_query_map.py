"""GET /v1/corrector/query-map: an affine corrector as W and b with
<q, h(s)> = <Wᵀq, s> + <q, b>, in three encodings that agree; the map
reproduces freshd's corrected scores; the identity before any refit; 409
not_affine for an MLP or a normalized corrector; 503 while a new fresh
width has no corrector; the Python client's QueryMap; and the FAISS
example (stale vectors in IndexFlatIP, queries through the map) giving
freshd's corrected answers."""

import base64
import io
import os
import shutil
import sys
import tempfile

import numpy as np

from harness import HERE, FRESHD, run
from support import ApiCase, call, index_args, save_index

sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python", "examples"))

N, D = 2000, 16


def rand(n, d, seed):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def floats(s):
    return np.frombuffer(base64.b64decode(s), "<f4")


class QueryMap(ApiCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.S = rand(N, D, 1)
        self.ipath, _ = save_index(self.tmp, self.S)

    def daemon(self, *flags):
        return self.start(*index_args(self.ipath), "--min-pairs", "64", "--refit-every-pairs",
                          "0", "--refit-every-seconds", "0", *flags)

    def train(self, d, dout=D, seed=2, unit=False):
        rng = np.random.default_rng(seed)
        M = (np.eye(dout, D) + 0.3 * rng.standard_normal((dout, D))).astype(np.float32)
        ids = list(range(0, N, 5))
        G = self.S[ids] @ M.T + (0.1 * rng.standard_normal(dout)).astype(np.float32)
        if unit:
            G /= np.linalg.norm(G, axis=1, keepdims=True)
        d.client.update(ids, G)
        r = d.client.refit(wait=True)
        self.assertTrue(r["accepted"], r)
        return r["version"]

    def test_affine_map_reproduces_corrected_scores(self):
        d = self.daemon("--corrector", "affine", "--normalize-output", "off")
        version = self.train(d)
        r = call(d, "GET", "/v1/corrector/query-map")
        self.assertEqual(r.status, 200, r)
        m = r.json()
        self.assertEqual((m["version"], m["kind"], m["d_in"], m["d_out"]), (version, "affine", D, D))
        W, b = floats(m["w_b64"]).reshape(D, D), floats(m["b_b64"])
        self.assertIn("W^T q", m["formula"])
        # The JSON and .npy encodings carry the same floats.
        j = call(d, "GET", "/v1/corrector/query-map?format=json").json()
        self.assertEqual(np.asarray(j["w"], np.float32).tobytes(), W.tobytes())
        self.assertEqual(np.asarray(j["b"], np.float32).tobytes(), b.tobytes())
        r = call(d, "GET", "/v1/corrector/query-map",
                 headers={"Accept": "application/octet-stream"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "application/octet-stream")
        Wb = np.load(io.BytesIO(r.data))
        self.assertEqual(Wb.shape, (D, D + 1))
        self.assertEqual(Wb[:, :D].tobytes(), W.tobytes())
        self.assertEqual(Wb[:, D].tobytes(), b.tobytes())
        # W is not the identity: the refit moved it.
        self.assertGreater(np.abs(W - np.eye(D)).max(), 0.05)
        # <Wᵀq, s> + <q, b> (in float64) is freshd's corrected score.
        Q = rand(8, D, 3)
        res = d.client.search(Q, k=20)["results"]
        for q, hits in zip(Q, res):
            ids = [h["id"] for h in hits]
            want = (self.S[ids].astype(np.float64) @ (W.T.astype(np.float64) @ q)
                    + float(q.astype(np.float64) @ b))
            got = np.array([h["score"] for h in hits])
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        # The client applies it the same way.
        qm = d.client.query_map()
        np.testing.assert_allclose(qm.transform_queries(Q), Q @ W, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(qm.offsets(Q), Q @ b, rtol=1e-6, atol=1e-6)
        self.assertEqual(qm.version, version)

    def test_identity_before_a_refit_and_a_wider_encoder(self):
        d = self.daemon("--corrector", "mlp", "--normalize-output", "off")
        m = call(d, "GET", "/v1/corrector/query-map?format=json").json()
        self.assertEqual(m["version"], 0)
        np.testing.assert_array_equal(np.asarray(m["w"]), np.eye(D))
        np.testing.assert_array_equal(np.asarray(m["b"]), np.zeros(D))
        self.train(d)
        r = call(d, "GET", "/v1/corrector/query-map")
        self.assertError(r, 409, "not_affine", "mlp")
        r = call(d, "GET", "/v1/corrector/query-map?format=xml")
        self.assertError(r, 400, "invalid_argument", "format")

    def test_normalized_is_not_affine(self):
        d = self.daemon("--corrector", "affine", "--normalize-output", "on")
        self.train(d, unit=True)
        r = call(d, "GET", "/v1/corrector/query-map")
        self.assertError(r, 409, "not_affine", "normalized")

    def test_new_width(self):
        d = self.daemon("--corrector", "affine", "--fresh-dim", "24", "--normalize-output", "off")
        r = call(d, "GET", "/v1/corrector/query-map")
        self.assertError(r, 503, "not_ready")
        self.train(d, dout=24)
        m = call(d, "GET", "/v1/corrector/query-map").json()
        self.assertEqual((m["d_in"], m["d_out"]), (D, 24))
        W, b = floats(m["w_b64"]).reshape(24, D), floats(m["b_b64"])
        q = rand(1, 24, 4)[0]
        hits = d.client.search([q], k=5)["results"][0]
        want = self.S[[h["id"] for h in hits]].astype(np.float64) @ (W.T @ q) + q @ b
        np.testing.assert_allclose([h["score"] for h in hits], want, rtol=1e-5, atol=1e-5)

    def test_faiss_example(self):
        """The example: FAISS over the stale vectors, queries through the
        map, freshd's corrected top-k."""
        import faiss_query_map
        self.assertEqual(faiss_query_map.main(["--n", "20000", "--dim", "32", "--queries", "100",
                                               "--freshd", FRESHD]), 0)


if __name__ == "__main__":
    run()
