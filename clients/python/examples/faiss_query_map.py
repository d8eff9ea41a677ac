#!/usr/bin/python3
"""Keep your vectors where they are: freshd learns how an encoder drifted,
and hands the correction out as a map of queries, so a FAISS index of the
old (stale) vectors answers as if it held the corrected ones.

    /usr/bin/python3 clients/python/examples/faiss_query_map.py [--n 50000]
        [--dim 64] [--freshd PATH]

Needs python3-numpy and python3-faiss.

What it does: a stale corpus S (random float vectors) whose encoder has
drifted by an affine map plus noise; a training loop's fresh embeddings of
5% of the targets go to freshd (POST /v1/updates), which fits an affine
corrector h(s) = W s + b. GET /v1/corrector/query-map returns W and b; for
a query q, <q, h(s)> = <Wᵀq, s> + <q, b>, and <q, b> is the same for
every target, so searching FAISS's IndexFlatIP over S with Wᵀq ranks the
targets exactly as freshd's corrected scores do. The example checks that
the top-k ids agree (up to ties within float rounding) and that the scores
plus <q, b> match freshd's within float error, and reports how much
closer to the fresh top-k this brings the stale index.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from train_loop import Daemon, save_npy  # noqa: E402

try:
    import faiss
except ImportError:  # pragma: no cover
    sys.exit("needs python3-faiss")


def overlap(a, b):
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b)]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--freshd", default=os.path.join(HERE, "..", "..", "..", "build", "server",
                                                      "freshd"))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    n, d, k = args.n, args.dim, args.k

    # The stale corpus, and the encoder's drift: fresh = (I + A) s + b + noise.
    S = rng.standard_normal((n, d)).astype(np.float32)
    A = (0.3 * rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
    b = (0.2 * rng.standard_normal(d)).astype(np.float32)
    G = S @ (np.eye(d, dtype=np.float32) + A).T + b
    G += 0.05 * rng.standard_normal(G.shape).astype(np.float32)

    work = tempfile.mkdtemp(prefix="freshd-querymap-")
    save_npy(os.path.join(work, "index.npy"), S)
    daemon = Daemon(os.path.abspath(args.freshd), "index.npy", work,
                    ["--corrector", "affine", "--refit-every-pairs", "0",
                     "--refit-every-seconds", "0"])
    try:
        c = daemon.client
        seen = rng.choice(n, n // 20, replace=False)
        for chunk in np.array_split(seen, max(1, len(seen) // 1000)):
            c.update(chunk.tolist(), G[chunk])
        refit = c.refit(wait=True)
        print("refit: version %d, held-out relative error %.4f -> %.4f" % (
            refit["version"], refit["holdout"]["stale_rel_err"],
            refit["holdout"]["corrected_rel_err"]))

        qm = c.query_map()
        Q = rng.standard_normal((args.queries, d)).astype(np.float32)
        index = faiss.IndexFlatIP(d)
        index.add(S)
        D_map, I_map = index.search(np.ascontiguousarray(qm.transform_queries(Q)), k + 1)
        scores_map = D_map + qm.offsets(Q)[:, None]

        res = c.search(Q, k=k + 1)["results"]
        I_fd = np.array([[h["id"] for h in r] for r in res])
        D_fd = np.array([[h["score"] for h in r] for r in res], np.float32)

        # Ids agree up to ties: where freshd's k-th and (k+1)-th scores are
        # within float rounding of each other, either order is right.
        tol = 1e-5 * np.maximum(1.0, np.abs(D_fd).max())
        same, ties = 0, 0
        for i in range(len(Q)):
            if list(I_map[i, :k]) == list(I_fd[i, :k]):
                same += 1
            elif np.min(np.diff(-D_fd[i])) <= 2 * tol:
                ties += 1
        err = float(np.max(np.abs(scores_map[:, :k] - D_fd[:, :k])))
        truth = np.argsort(-(Q @ G.T), axis=1)[:, :k]
        _, I_stale = index.search(Q, k)
        print("queries %d, k %d: FAISS(stale) + query map = freshd corrected for %d, "
              "%d more differ only inside float ties; max |score difference| %.2e" % (
                  len(Q), k, same, ties, err))
        print("top-%d overlap with the fresh encoder's: stale %.3f, query map %.3f" % (
            k, overlap(I_stale, truth), overlap(I_map[:, :k], truth)))
        ok = same + ties == len(Q) and err <= 10 * tol
        print("query map reproduces freshd's corrected answers: %s" % ("yes" if ok else "NO"))
        return 0 if ok else 1
    finally:
        daemon.stop()


if __name__ == "__main__":
    sys.exit(main())
