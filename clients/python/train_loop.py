#!/usr/bin/python3
"""An example trainer for freshd: a small dual encoder trained in numpy on a
real retrieval task, comparing ways of getting hard negatives.

    /usr/bin/python3 clients/python/train_loop.py [--steps N] [--freshd PATH]
                                                  [--data-dir DIR] [--quick]

Design choices (and why)
------------------------

Task.  The man pages installed locally (/usr/share/man/man[1-8]):
query = the NAME line ("ls - list directory contents"), target = the text
of the DESCRIPTION section (first 300 tokens).  Redirect pages (".so") and
symlinks are skipped; pairs whose query or target text duplicates an
earlier one are dropped, so every query has exactly one relevant target.
The figures in the README came from a machine with ~18,600 such pairs,
most of them the command reference of a cloud SDK, whose GA / beta / alpha
variants of one command have nearly identical pages: telling them apart is
exactly what hard negatives teach.  A minimal Debian install has far fewer
pages (and a container image often none): the task, and so the numbers,
depend on what is installed.  (The apt package lists were the other
candidate, but without Translation-en files under /var/lib/apt/lists the
Packages files carry only one-line descriptions, nothing to retrieve.)  10% of the pairs (at most 2,000) are held
out as test queries; their targets stay in the corpus, as in any
retrieval benchmark.

Encoder.  Words ([a-z0-9]+, lower case) and adjacent word pairs, kept when
they occur in at least two training documents; (1 + log tf) * idf weights,
L2-normalised rows (a sparse CSR matrix in plain numpy).  Each tower is a
linear projection W (features x d, d = 128) followed by unit normalisation.
The two towers (query, target) start from the same seeded Gaussian matrix,
so the untrained model is a random projection of tf-idf cosine (a fair
lexical baseline), and then train separately.  Loss: softmax cross-entropy
at temperature 0.05 of each query against every target the step encoded:
its positive, the hard negatives of all queries of the batch and the other
queries' positives (in-batch).  Optimiser: Adam applied lazily to the rows
of W the batch touched (the usual sparse-Adam), same seed, same batch
order and same hyper-parameters for every method: the methods differ only
in where the hard negatives come from.

Hard negatives.  n per query, drawn without replacement from
softmax(score / T) over all targets but the positive (Gumbel-top-k; the
paper's sampled softmax), at T = 0.05, with scores from:
  stale      the index built from the target tower at step 0, never
             refreshed (freshd --corrector none);
  periodic   the same, but every R steps all N targets are re-encoded,
             written as a .npy under the daemon's data dir and swapped in
             with POST /v1/index/reload (N re-embeddings per refresh);
  corrected  freshd's corrected index: each step the encoded targets'
             fresh embeddings (a budget of them, least recently sent
             first) go to POST /v1/updates; every K steps a refit
             (POST /v1/refit?wait=true: synchronous, so a run is
             reproducible; --async-refit leaves it to the daemon's
             --refit-every-pairs policy instead);
  fresh      the upper bound: all targets re-encoded every step and the
             negatives sampled from exact scores in numpy.
The index at step 0 is shared by all methods and not counted.  Counted
re-embeddings: N per refresh (periodic, fresh) and every fresh embedding
sent to freshd (corrected).  The target encodings every method computes
for its own loss (positives and negatives) are the same for all and listed
apart ("loss encodings").

Evaluation.  Recall@1 and @10 (and MRR) of the held-out queries against all
N targets, with target embeddings computed exactly by the final target
tower.  Intermediate evaluations (--evals) are not counted as
re-embeddings; they also report how many of the exact top-10 neighbours of
sampled training queries the index a method samples from recovers.

The criterion the project hopes to meet: corrected reaches >= 97% of the
fresh run's recall while re-embedding >= 4x fewer targets than the periodic
refresh of equal recall.  The script prints the comparison it can make from
the runs it did (interpolating between the periods it ran).

Exit status: 0 when every run finished; 3 when there are too few man pages
here to build the task (nothing was run).

Every freshd this script starts listens on 127.0.0.1 port 0 with its own
data dir under --data-dir (default: a temporary directory, removed at the
end), and is stopped with SIGTERM.
"""

import argparse
import collections
import glob
import gzip
import math
import os
import re
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import freshd_daemon  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_FRESHD = os.path.normpath(os.path.join(HERE, "..", "..", "build", "server", "freshd"))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The corpus: man pages -> (NAME line, DESCRIPTION text)
# ---------------------------------------------------------------------------

_ESC = re.compile(r"\\f(\[[^\]]*\]|\(..|.)|\\s[+-]?\d+|\\\*(\[[^\]]*\]|\(..|.)"
                  r"|\\\(..|\\\[[^\]]*\]|\\[&|^%:/,]|\\[ ~0]|\\n(\(..|.)")
_SECTION = re.compile(r"^\.(SH|Sh)\s+(.*)$")
_KEEP_ARGS = frozenset(
    "B I BR IR RB RI BI IB SM SB TP IP SS Ss Nm Nd Ar Fl Cm Ic Xr Pa Dv Er Ev "
    "Fn Ft Fa Va Vt Li Sy Em Dq Sq Ql Op It Pq Aq Tn".split())
_TOKEN = re.compile(r"[a-z0-9]+")


def _roff_text(s):
    s = s.replace("\\-", "-").replace("\\e", "\\")
    return _ESC.sub(" ", s).replace("\\", " ")


def parse_man(path):
    """(name line, description text) of one man page, or None."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read(400000).decode("utf-8", "replace")
    sections = collections.OrderedDict()
    cur = None
    for line in raw.split("\n"):
        if line.startswith(".so ") and not sections:
            return None  # a redirect to another page
        if line.startswith(('.\\"', "'\\\"", ".\\#")):
            continue
        m = _SECTION.match(line)
        if m:
            cur = m.group(2).strip().strip('"').upper()
            sections.setdefault(cur, [])
            continue
        if cur is None:
            continue
        if line.startswith((".", "'")):
            parts = line[1:].split(None, 1)
            if len(parts) == 2 and parts[0] in _KEEP_ARGS:
                sections[cur].append(parts[1].replace('"', ""))
            continue
        sections[cur].append(line)
    name = desc = None
    others = []
    for key, lines in sections.items():
        if name is None and key == "NAME":
            name = _roff_text(" ".join(lines))
        elif desc is None and key.startswith("DESCRIPTION"):
            desc = _roff_text(" ".join(lines))
        elif key != "SYNOPSIS":
            others.append(_roff_text(" ".join(lines)))
    if not name or not desc:
        return None
    return name, desc, others


def load_corpus(subsample=1, passages=0, seed=1, max_target_tokens=300, chunk=100):
    """(pairs, passages): pairs of (query tokens, target tokens), and up to
    `passages` extra targets without a query (100-token chunks of the
    pages' other sections: options, examples, notes), deduplicated."""
    files = sorted(glob.glob("/usr/share/man/man[1-8]/*"))
    files = [p for p in files if not os.path.islink(p)][::subsample]
    pairs, seen_q, seen_t, extra = [], set(), set(), []
    for path in files:
        try:
            r = parse_man(path)
        except (OSError, EOFError, ValueError):
            continue
        if r is None:
            continue
        q = _TOKEN.findall(r[0].lower())
        t = _TOKEN.findall(r[1].lower())[:max_target_tokens]
        if passages:
            for text in r[2]:
                toks = _TOKEN.findall(text.lower())
                for a in range(0, len(toks), chunk):
                    if len(toks[a:a + chunk]) >= 20:
                        extra.append(toks[a:a + chunk])
        if not q or len(t) < 3:
            continue
        qk, tk = " ".join(q), " ".join(t)
        if qk in seen_q or tk in seen_t:
            continue
        seen_q.add(qk)
        seen_t.add(tk)
        pairs.append((q, t))
    more = []
    for toks in extra:
        k = " ".join(toks)
        if k not in seen_t:
            seen_t.add(k)
            more.append(toks)
    if len(more) > passages:
        keep = np.sort(np.random.default_rng(seed).choice(len(more), passages, replace=False))
        more = [more[i] for i in keep]
    return pairs, more


# ---------------------------------------------------------------------------
# Sparse tf-idf features (CSR in numpy)
# ---------------------------------------------------------------------------

def _grams(tokens):
    return tokens + [a + "_" + b for a, b in zip(tokens, tokens[1:])]


class Padded:
    """Sparse rows as fixed-width (index, value) matrices; unused slots
    point at the extra all-zero feature `pad` with value 0."""

    def __init__(self, idx, val, pad):
        self.idx, self.val, self.pad = idx, val, pad
        self.n = len(idx)

    def take(self, rows):
        return self.idx[rows], self.val[rows]


def build_features(docs_by_role, fit_docs, max_features=64):
    """Vocabulary and idf from fit_docs; one Padded matrix per list of
    docs_by_role, keeping each document's max_features heaviest features.
    Returns (number of features + 1 for the pad, matrices)."""
    df = collections.Counter()
    for d in fit_docs:
        df.update(set(_grams(d)))
    words = sorted(w for w, c in df.items() if c >= 2)
    vocab = {w: i for i, w in enumerate(words)}
    idf = np.array([math.log(len(fit_docs) / df[w]) for w in words], dtype=np.float32)
    pad = len(words)
    out = []
    for docs in docs_by_role:
        rows = []
        for d in docs:
            c = collections.Counter(vocab[g] for g in _grams(d) if g in vocab)
            ii = np.fromiter(c.keys(), dtype=np.int64, count=len(c))
            v = (1.0 + np.log(np.fromiter(c.values(), dtype=np.float32, count=len(c)))) * idf[ii]
            if len(ii) > max_features:
                keep = np.sort(np.argsort(-v, kind="stable")[:max_features])
                ii, v = ii[keep], v[keep]
            v /= max(float(np.linalg.norm(v)), 1e-9)
            rows.append((ii, v))
        width = max(1, max(len(r[0]) for r in rows))
        idx = np.full((len(rows), width), pad, dtype=np.int64)
        val = np.zeros((len(rows), width), dtype=np.float32)
        for r, (ii, v) in enumerate(rows):
            idx[r, :len(ii)] = ii
            val[r, :len(ii)] = v
        out.append(Padded(idx, val, pad))
    return pad + 1, out


# ---------------------------------------------------------------------------
# The encoder: one linear tower over sparse features, unit-normalised, with
# lazy (row-sparse) Adam
# ---------------------------------------------------------------------------

class Tower:
    def __init__(self, W0, lr, b1=0.9, b2=0.999, eps=1e-8):
        self.W = W0.copy()
        self.W[-1] = 0.0  # the pad feature
        self.m = np.zeros_like(W0)
        self.v = np.zeros_like(W0)
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.t = 0

    def state(self):
        return (self.W.copy(), self.m.copy(), self.v.copy(), self.t)

    def load(self, state):
        W, m, v, self.t = state
        self.W[...], self.m[...], self.v[...] = W, m, v

    def encode(self, feats, rows, chunk=2048):
        """Unit-normalised embeddings of rows (no gradient state kept)."""
        rows = np.asarray(rows)
        out = np.empty((len(rows), self.W.shape[1]), dtype=np.float32)
        for a in range(0, len(rows), chunk):
            idx, val = feats.take(rows[a:a + chunk])
            u = np.einsum("bl,bld->bd", val, self.W[idx])
            out[a:a + chunk] = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-9)
        return out

    def forward(self, feats, rows):
        idx, val = feats.take(rows)
        u = np.einsum("bl,bld->bd", val, self.W[idx])
        norm = np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-9)
        e = u / norm
        return e, (idx, val, feats.pad, e, norm)

    def backward(self, cache, de):
        """Gradient of the loss w.r.t. the normalised embeddings -> Adam step
        on the rows of W the batch touched."""
        idx, val, pad, e, norm = cache
        du = (de - e * np.sum(e * de, axis=1, keepdims=True)) / norm
        rows, G = _scatter_rows(idx, val, du, pad)
        self.t += 1
        b1, b2 = self.b1, self.b2
        m = self.m[rows] * b1 + (1 - b1) * G
        v = self.v[rows] * b2 + (1 - b2) * G * G
        self.m[rows], self.v[rows] = m, v
        step = self.lr * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        self.W[rows] -= step * m / (np.sqrt(v) + self.eps)


def _scatter_rows(idx, val, du, pad, rounds=6):
    """(rows, G): G[j] = sum of val[b, l] * du[b] over the slots with
    idx[b, l] == rows[j] (pads skipped).  numpy has no fast scatter-add, so:
    sort the slots by feature, then add rows of the segments' k-th elements
    for short segments and reduceat the few long ones."""
    flat = idx.ravel()
    keep = np.flatnonzero(flat != pad)
    seg = keep // idx.shape[1]
    fidx = flat[keep]
    order = np.argsort(fidx, kind="stable")
    s = fidx[order]
    g = du[seg[order]] * val.ravel()[keep][order][:, None]
    head = np.empty(len(s), dtype=bool)
    head[0] = True
    np.not_equal(s[1:], s[:-1], out=head[1:])
    first = np.flatnonzero(head)
    rows = s[first]
    cnt = np.diff(np.append(first, len(s)))
    G = g[first].copy()
    short = np.flatnonzero((cnt > 1) & (cnt <= rounds))
    for k in range(1, rounds):
        short = short[cnt[short] > k]
        if not len(short):
            break
        G[short] += g[first[short] + k]
    long_ = np.flatnonzero(cnt > rounds)
    if len(long_):
        gz = np.concatenate([g, np.zeros((1, g.shape[1]), g.dtype)])
        bounds = np.stack([first[long_], first[long_] + cnt[long_]], axis=1).ravel()
        G[long_] = np.add.reduceat(gz, bounds, axis=0)[::2]
    return rows, G


def gumbel_topk(scores, n, temperature, rng, exclude_cols):
    """n distinct columns per row, without replacement, from
    softmax(scores / temperature) with exclude_cols[i] removed."""
    z = scores / temperature + rng.gumbel(size=scores.shape).astype(np.float32)
    z[np.arange(len(z)), exclude_cols] = -np.inf
    part = np.argpartition(-z, n, axis=1)[:, :n]
    return part


# ---------------------------------------------------------------------------
# freshd processes
# ---------------------------------------------------------------------------

class Daemon(freshd_daemon.Daemon):
    """One freshd on 127.0.0.1 port 0 serving data_dir/index_name, its log
    in data_dir/freshd.log, ready when /readyz says so; stopped by SIGTERM
    (the shared helper, freshd_daemon.py)."""

    def __init__(self, binary, index_name, data_dir, flags):
        super().__init__("--index", os.path.join(data_dir, index_name), *flags, binary=binary,
                         data_dir=data_dir, stderr_path=os.path.join(data_dir, "freshd.log"),
                         ready="readyz", timeout=60.0, client_timeout=120.0)

    def stop(self):
        super().stop(timeout=15.0)


def wait_reload(client, name, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        r = client.info()["index"].get("reload")
        if r and str(r.get("path", "")).endswith(name) and r.get("state") in ("done", "failed"):
            if r["state"] != "done":
                raise RuntimeError("index reload failed: %r" % (r,))
            return
        time.sleep(0.01)
    raise RuntimeError("index reload of %s did not finish" % name)


def save_npy(path, X):
    tmp = path + ".tmp.npy"
    np.save(tmp, np.ascontiguousarray(X, dtype="<f4"))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------

MIN_PAIRS = 500


class TooFewPages(Exception):
    pass


class Task:
    def __init__(self, args):
        t0 = time.time()
        self.seed = args.seed
        pairs, passages = load_corpus(args.subsample, args.passages, args.seed)
        if len(pairs) < MIN_PAIRS:
            raise TooFewPages("%d man-page pairs here (at least %d needed): install "
                              "packages that ship man pages" % (len(pairs), MIN_PAIRS))
        rng = np.random.default_rng(args.seed)
        perm = rng.permutation(len(pairs))
        n_test = min(2000, len(pairs) // 10)
        self.test = np.sort(perm[:n_test])
        self.train = np.sort(perm[n_test:])
        queries = [p[0] for p in pairs]
        targets = [p[1] for p in pairs] + passages
        fit = targets + [queries[i] for i in self.train]
        self.F, (self.Q, self.T) = build_features([queries, targets], fit)
        self.N = len(targets)
        self.P = len(pairs)
        self._lsa = {}
        log("task: %d query/target pairs (%d train queries, %d test) + %d passages = %d "
            "targets, %d features, %.1fs" % (self.P, len(self.train), len(self.test),
                                              len(passages), self.N, self.F, time.time() - t0))

    def lsa(self, k):
        if k not in self._lsa:
            t0 = time.time()
            V = lsa_projection(self.T, self.F, k, self.seed)
            # scale so that a typical document's projection has norm ~1, like
            # the random initialisation's
            u = np.einsum("bl,bld->bd", self.T.val, V[self.T.idx])
            V *= 1.0 / max(float(np.mean(np.linalg.norm(u, axis=1))), 1e-6)
            self._lsa[k] = V
            log("task: LSA projection (%d dims) in %.1fs" % (k, time.time() - t0))
        return self._lsa[k]


def _xt_times(feats, Y, F):
    """X^T Y for the sparse documents X (rows of feats) and dense Y."""
    rows, G = _scatter_rows(feats.idx, feats.val, Y, feats.pad)
    out = np.zeros((F, Y.shape[1]), dtype=np.float32)
    out[rows] = G
    return out


def lsa_projection(feats, F, k, seed, power_iters=3, oversample=16):
    """The top-k right singular vectors of the tf-idf matrix of feats
    (randomised SVD), as an F x k float32 matrix: the "pretrained" encoder."""
    rng = np.random.default_rng(seed)
    omega = rng.standard_normal((F, k + oversample)).astype(np.float32)
    omega[feats.pad] = 0.0
    Y = np.einsum("bl,bld->bd", feats.val, omega[feats.idx])
    Qm, _ = np.linalg.qr(Y)
    for _ in range(power_iters):
        Z, _ = np.linalg.qr(_xt_times(feats, Qm.astype(np.float32), F))
        Qm, _ = np.linalg.qr(np.einsum("bl,bld->bd", feats.val, Z[feats.idx]))
    Bt = _xt_times(feats, Qm.astype(np.float32), F)          # F x (k + p) = (Q^T X)^T
    evals, evecs = np.linalg.eigh(Bt.T.astype(np.float64) @ Bt)  # B B^T
    top = np.argsort(-evals)[:k]
    V = Bt @ (evecs[:, top] / np.sqrt(np.maximum(evals[top], 1e-12)))
    return V.astype(np.float32)


class Run:
    """One training run; the negative source is the only thing that varies."""

    def __init__(self, task, args, name):
        self.task, self.args, self.name = task, args, name
        rng = np.random.default_rng(args.seed + 1)
        W0 = (rng.standard_normal((task.F, args.dim)) / math.sqrt(args.dim)).astype(np.float32)
        if args.init == "lsa":
            W0 = task.lsa(args.dim)
        self.qt = Tower(W0, args.lr)
        if args.init == "independent":
            W0 = (rng.standard_normal((task.F, args.dim)) / math.sqrt(args.dim)).astype(np.float32)
        self.tt = Tower(W0, args.lr)
        if args.warmup:
            self._warm_start()
        self.reembedded = 0       # counted re-embeddings (refreshes / sent to freshd)
        self.loss_encodings = 0   # targets encoded for the loss (same work for every method)
        self.train_time = 0.0
        self.curve = []
        self.notes = []
        self.timers = collections.defaultdict(float)

    def timed(self, key, fn):
        def wrapper(*a):
            t0 = time.time()
            try:
                return fn(*a)
            finally:
                self.timers[key] += time.time() - t0
        return wrapper

    def _all_batches(self):
        """The same seeded batch order for every method (warm-up included)."""
        rng = np.random.default_rng(self.args.seed + 2)
        order = np.array([], dtype=np.int64)
        for step in range(self.args.warmup + self.args.steps):
            if len(order) < self.args.batch:
                order = np.concatenate([order, rng.permutation(self.task.train)])
            b, order = order[:self.args.batch], order[self.args.batch:]
            yield step, b

    def batches(self):
        """The steps with hard negatives, numbered after the warm-up."""
        for step, b in self._all_batches():
            if step >= self.args.warmup:
                yield step, b

    def _warm_start(self):
        """--warmup steps with in-batch negatives only (no index), shared by
        every method: computed once per task and copied."""
        a = self.args
        key = (a.init, a.warmup, a.dim, a.lr, a.seed, a.batch, a.tau)
        cache = self.task.__dict__.setdefault("_warm", {})
        if key not in cache:
            t0 = time.time()
            none = np.zeros((a.batch, 0), dtype=np.int64)
            for step, qids in self._all_batches():
                if step >= a.warmup:
                    break
                self.step(step, qids, lambda eq, q: none[:len(q)])
            cache[key] = (self.qt.state(), self.tt.state())
            log("warm-up: %d steps with in-batch negatives only, %.1fs"
                % (a.warmup, time.time() - t0))
        self.qt.load(cache[key][0])
        self.tt.load(cache[key][1])

    def step(self, step, qids, negatives_fn):
        """One SGD step; negatives_fn(query embeddings, positive ids) -> (B, n) ids.
        Returns (encoded target ids, their fresh embeddings, query embeddings)."""
        a = self.args
        eq, qcache = self.qt.forward(self.task.Q, qids)
        neg = negatives_fn(eq, qids)
        cols = np.unique(np.concatenate([qids, neg.ravel()]))
        et, tcache = self.tt.forward(self.task.T, cols)
        self.loss_encodings += len(cols)
        logits = (eq @ et.T) / a.tau
        label = np.searchsorted(cols, qids)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.mean(np.log(p[np.arange(len(qids)), label] + 1e-30))
        d = p
        d[np.arange(len(qids)), label] -= 1.0
        d /= len(qids) * a.tau
        deq = d @ et
        det = d.T @ eq
        self.qt.backward(qcache, deq)
        self.tt.backward(tcache, det)
        return cols, et, eq, loss

    def evaluate(self, step, index_fn=None):
        """Recall@1/@10 and MRR of the test queries over all targets, exact."""
        task = self.task
        E = self.tt.encode(task.T, np.arange(task.N))
        Eq = self.qt.encode(task.Q, task.test)
        S = Eq @ E.T
        pos = S[np.arange(len(task.test)), task.test]
        rank = (S > pos[:, None]).sum(axis=1)
        res = {"step": step, "r1": float(np.mean(rank < 1)), "r10": float(np.mean(rank < 10)),
               "mrr": float(np.mean(1.0 / (rank + 1)))}
        if index_fn is not None:
            # How many of the exact top-10 (positive excluded) of 256 training
            # queries the index the method samples from recovers.
            rng = np.random.default_rng(self.args.seed + 7 + step)
            qids = rng.choice(task.train, 256, replace=False)
            eq = self.qt.encode(task.Q, qids)
            Se = eq @ E.T
            Se[np.arange(len(qids)), qids] = -np.inf
            exact = np.argpartition(-Se, 10, axis=1)[:, :10]
            got = index_fn(eq, qids)
            res["overlap10"] = float(np.mean([len(set(x) & set(y)) / 10.0
                                              for x, y in zip(exact, got)]))
        return res

    def eval_points(self):
        k = max(1, self.args.evals)
        return set(self.args.warmup + int(round(self.args.steps * (i + 1) / k))
                   for i in range(k))

    def record(self, step, index_fn=None):
        r = self.evaluate(step, index_fn)
        self.curve.append(r)
        extra = " overlap@10=%.2f" % r["overlap10"] if "overlap10" in r else ""
        extra += "".join(" %s=%.0fs" % kv for kv in sorted(self.timers.items()))
        log("  [%s] step %5d  R@1=%.4f R@10=%.4f MRR=%.4f%s  reembedded=%d  %.1fs"
            % (self.name, step, r["r1"], r["r10"], r["mrr"], extra, self.reembedded,
               self.train_time))

    def result(self):
        last = self.curve[-1]
        return {"name": self.name, "r1": last["r1"], "r10": last["r10"], "mrr": last["mrr"],
                "reembedded": self.reembedded, "loss_encodings": self.loss_encodings,
                "time": self.train_time, "curve": self.curve, "notes": self.notes}


def freshd_negatives(client, args, step_seed):
    def fn(eq, qids):
        r = client.negatives(eq, positives=[[int(i)] for i in qids], n=args.negatives,
                             method=args.method, temperature=args.sample_temperature,
                             seed=step_seed)
        return np.array([[h["id"] for h in row] for row in r["results"]], dtype=np.int64)
    return fn


def check_daemon(client, E, eq, qids, temperature):
    """Compares freshd's answers on its uncorrected index E with numpy:
    exact top-10 (ties by id), sampled negatives distinct and without the
    positive, and their logprob.  Returns a list of deviations (empty: ok)."""
    problems = []
    S = eq @ E.T
    r = client.search(eq, k=10, scoring="stale")["results"]
    for i, row in enumerate(r):
        got = [h["id"] for h in row]
        want = sorted(range(len(E)), key=lambda j: (-S[i, j], j))[:10]
        if got != want:
            # float32 sums may differ in the last bit: accept equal scores
            if not np.allclose(np.sort(S[i, got]), np.sort(S[i, want]), atol=1e-5):
                problems.append("search top-10 of query %d: %s, numpy %s" % (i, got, want))
    r = client.negatives(eq, positives=[[int(q)] for q in qids], n=16, method="sample",
                         temperature=temperature, seed=1, scoring="stale")["results"]
    for i, row in enumerate(r):
        ids = [h["id"] for h in row]
        if len(set(ids)) != len(ids) or int(qids[i]) in ids:
            problems.append("negatives of query %d: %s (positive %d)" % (i, ids, qids[i]))
        z = S[i] / temperature
        z[qids[i]] = -np.inf
        lse = np.log(np.sum(np.exp(z - z.max()))) + z.max()
        for h in row:
            want = z[h["id"]] - lse
            if abs(h["logprob"] - want) > 1e-2 * max(1.0, abs(want)):
                problems.append("logprob of target %d for query %d: %.5f, numpy %.5f"
                                % (h["id"], i, h["logprob"], want))
                break
    return problems


def freshd_top10(client):
    def fn(eq, qids):
        r = client.search(eq, k=10, exclude=[[int(i)] for i in qids])
        return [[h["id"] for h in row] for row in r["results"]]
    return fn


def run_with_freshd(task, args, name, root, period=0, correct=False):
    """stale (period 0, no correction), periodic (period R), corrected."""
    run = Run(task, args, name)
    data_dir = os.path.join(root, name)
    shutil.rmtree(data_dir, ignore_errors=True)
    os.makedirs(data_dir)
    E0 = run.tt.encode(task.T, np.arange(task.N))
    save_npy(os.path.join(data_dir, "index-0.npy"), E0)
    flags = ["--corrector", args.corrector if correct else "none"]
    if correct:
        flags += ["--hidden", str(args.hidden), "--sync", "interval=100",
                  "--refit-max-seconds", "600"]
        if args.async_refit:
            flags += ["--refit-every-pairs", str(args.refit_pairs), "--refit-every-seconds", "0"]
        else:
            flags += ["--refit-every-pairs", "0", "--refit-every-seconds", "0"]
        if args.max_step_lag:
            flags += ["--max-step-lag", str(args.max_step_lag)]
        flags += ["--refit-lr", repr(args.refit_lr), "--normalize-output", args.normalize_output]
        flags += args.freshd_flag
    daemon = Daemon(args.freshd, "index-0.npy", data_dir, flags)
    c = daemon.client
    if not correct and not period:
        qids = task.train[:8]
        problems = check_daemon(c, E0, run.qt.encode(task.Q, qids), qids,
                                args.sample_temperature)
        for p in problems:
            log("  [%s] DAEMON DEVIATION: %s" % (name, p))
        run.notes += ["daemon deviation: " + p for p in problems]
    last_sent = np.full(task.N, -10 ** 9, dtype=np.int64)
    send_rng = np.random.default_rng(args.seed + 3)
    refits = accepted = 0
    current = "index-0.npy"
    evals = run.eval_points()
    try:
        for step, qids in run.batches():
            t0 = time.time()
            if period and step > args.warmup and (step - args.warmup) % period == 0:
                # full re-embedding: every target through the current tower,
                # a new index file under the data dir, swapped in by freshd
                E = run.tt.encode(task.T, np.arange(task.N))
                fname = "index-%d.npy" % step
                save_npy(os.path.join(data_dir, fname), E)
                c.reload(fname)
                wait_reload(c, fname)
                run.timers["refresh"] += time.time() - t0
                if current != "index-0.npy":
                    os.remove(os.path.join(data_dir, current))
                current = fname
                run.reembedded += task.N
            neg_fn = run.timed("negatives", freshd_negatives(c, args, args.seed * 1000003 + step))
            cols, et, eq, loss = run.step(step, qids, neg_fn)
            t1 = time.time()
            if correct:
                # a budget of this step's fresh target embeddings, the least
                # recently sent first (ties in a seeded random order)
                budget = args.send if args.send > 0 else len(cols)
                tie = send_rng.random(len(cols))
                order = np.lexsort((tie, last_sent[cols]))[:budget]
                ids = cols[order]
                last_sent[ids] = step
                if args.send_queries:
                    qmask = np.isin(qids, ids)
                    qsel = np.flatnonzero(qmask)
                    c.update(ids, et[order], queries=eq[qsel], positives=qids[qsel], step=step)
                else:
                    c.update(ids, et[order], step=step)
                run.reembedded += len(ids)
                run.timers["updates"] += time.time() - t1
                if not args.async_refit and (step + 1) % args.refit_every == 0:
                    t2 = time.time()
                    if args.refit_from_identity:
                        c.reset()
                    r = c.refit(wait=True)
                    run.timers["refit"] += time.time() - t2
                    refits += 1
                    accepted += bool(r.get("accepted"))
                    hold = r.get("holdout") or {}
                    if args.verbose:
                        log("  [%s] step %d refit: accepted=%s rel err stale %.3f corrected %.3f "
                            "%s" % (name, step + 1, r.get("accepted"),
                                    hold.get("stale_rel_err", float("nan")),
                                    hold.get("corrected_rel_err", float("nan")),
                                    r.get("reason", "")))
            run.train_time += time.time() - t0
            if step + 1 in evals:
                run.record(step + 1, freshd_top10(c))
        if correct:
            cs = c.corrector()
            hold = cs.get("holdout") or {}
            run.notes.append("corrector v%s, %d/%d refits accepted, holdout rel err stale %.3f -> "
                             "corrected %.3f" % (cs.get("version"), accepted, refits,
                                                 hold.get("stale_rel_err", float("nan")),
                                                 hold.get("corrected_rel_err", float("nan"))))
            log("  [%s] %s" % (name, run.notes[-1]))
    finally:
        daemon.stop()
    return run.result()


def run_fresh(task, args, name="fresh"):
    """Upper bound: re-encode every target every step, sample exactly."""
    run = Run(task, args, name)
    rng = np.random.default_rng(args.seed + 4)
    evals = run.eval_points()
    state = {}

    def neg_fn(eq, qids):
        E = run.tt.encode(task.T, np.arange(task.N))
        state["E"] = E
        run.reembedded += task.N
        S = eq @ E.T
        if args.method == "topk":
            S[np.arange(len(qids)), qids] = -np.inf
            return np.argpartition(-S, args.negatives, axis=1)[:, :args.negatives]
        return gumbel_topk(S, args.negatives, args.sample_temperature, rng, qids)

    for step, qids in run.batches():
        t0 = time.time()
        run.step(step, qids, run.timed("negatives", neg_fn))
        run.train_time += time.time() - t0
        if step + 1 in evals:
            run.record(step + 1)
    return run.result()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=None, help="training steps of every method")
    ap.add_argument("--freshd", default=DEFAULT_FRESHD, help="the freshd binary")
    ap.add_argument("--data-dir", default=None,
                    help="where the daemons' data dirs go (default: a temporary dir, removed)")
    ap.add_argument("--quick", action="store_true", help="a small run (< 1 min) for smoke tests")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--negatives", type=int, default=16, help="hard negatives per query")
    ap.add_argument("--method", choices=("sample", "topk"), default="sample")
    ap.add_argument("--sample-temperature", type=float, default=0.05)
    ap.add_argument("--tau", type=float, default=0.05, help="softmax temperature of the loss")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--passages", type=int, default=0,
                    help="extra targets without a query: chunks of the pages' other sections")
    ap.add_argument("--warmup", type=int, default=0,
                    help="steps with in-batch negatives only before the index is built")
    ap.add_argument("--init", choices=("independent", "shared", "lsa"), default="independent",
                    help="towers start from independent random projections, or one shared")
    ap.add_argument("--periods", default=None,
                    help="comma-separated refresh periods R for the periodic method")
    ap.add_argument("--corrector", choices=("mlp", "affine"), default="mlp")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--send", type=int, default=64,
                    help="fresh target embeddings sent to freshd per step (0: all encoded)")
    ap.add_argument("--send-queries", action="store_true",
                    help="also send the queries whose positive is sent")
    ap.add_argument("--refit-every", type=int, default=25, help="steps between refits")
    ap.add_argument("--async-refit", action="store_true",
                    help="let freshd refit by itself (every --refit-pairs pairs); not reproducible")
    ap.add_argument("--refit-pairs", type=int, default=1600)
    ap.add_argument("--max-step-lag", type=int, default=200,
                    help="refits drop pairs more than this many steps old (0: keep all)")
    ap.add_argument("--refit-lr", type=float, default=1e-2, help="Adam step size of freshd's refits")
    ap.add_argument("--normalize-output", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--refit-from-identity", action="store_true",
                    help="reset the corrector before each refit, so that the newest fit is "
                         "published whenever it beats the identity")
    ap.add_argument("--freshd-flag", action="append", default=[],
                    help="an extra flag for the corrected daemon (repeatable)")
    ap.add_argument("--fresh-steps", type=int, default=None,
                    help="steps of the every-step re-embedding run (default: --steps)")
    ap.add_argument("--methods", default="stale,periodic,corrected,fresh")
    ap.add_argument("--verbose", action="store_true", help="log every refit")
    ap.add_argument("--evals", type=int, default=None, help="evaluations per run")
    ap.add_argument("--subsample", type=int, default=None,
                    help="use every k-th man page (default 1; 4 with --quick)")
    args = ap.parse_args(argv)
    if args.subsample is None:
        args.subsample = 4 if args.quick else 1
    if args.steps is None:
        args.steps = 150 if args.quick else 1500
    if args.evals is None:
        args.evals = 1 if args.quick else 5
    if args.periods is None:
        s = args.steps
        args.periods = ",".join(str(max(1, s // k)) for k in ((3,) if args.quick else (3, 6, 12, 24)))
    periods = [int(x) for x in args.periods.split(",") if x.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    np.random.seed(args.seed)
    t_start = time.time()
    try:
        task = Task(args)
    except TooFewPages as e:
        print("train_loop: %s" % e, file=sys.stderr)
        return 3
    root = args.data_dir or tempfile.mkdtemp(prefix="freshd-train-")
    os.makedirs(root, exist_ok=True)
    results = []
    try:
        if "stale" in methods:
            log("method stale: index from step 0, never refreshed, no correction")
            results.append(run_with_freshd(task, args, "stale", root))
        if "periodic" in methods:
            for R in periods:
                log("method periodic: full re-embedding every %d steps" % R)
                results.append(run_with_freshd(task, args, "periodic R=%d" % R, root, period=R))
        if "corrected" in methods:
            log("method corrected: freshd --corrector %s, %s fresh embeddings a step, refit %s"
                % (args.corrector, args.send or "all",
                   "by the daemon" if args.async_refit else "every %d steps" % args.refit_every))
            results.append(run_with_freshd(task, args, "corrected", root, correct=True))
        if "fresh" in methods:
            fargs = argparse.Namespace(**vars(args))
            if args.fresh_steps:
                fargs.steps = args.fresh_steps
            log("method fresh: every target re-embedded every step (%d steps)" % fargs.steps)
            results.append(run_fresh(task, fargs, "fresh" if fargs.steps == args.steps
                                     else "fresh (%d steps)" % fargs.steps))
    finally:
        if args.data_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    report(task, args, results, time.time() - t_start)
    return 0


def report(task, args, results, total):
    print("freshd train_loop: %d man-page pairs, %d test queries, %d steps x %d queries, "
          "%d %s negatives (T=%g), d=%d, seed %d"
          % (task.N, len(task.test), args.steps, args.batch, args.negatives, args.method,
             args.sample_temperature, args.dim, args.seed))
    print()
    hdr = "%-22s %8s %8s %8s %14s %10s %16s %9s" % (
        "method", "R@1", "R@10", "MRR", "re-embeddings", "(x N)", "loss encodings", "time s")
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        print("%-22s %8.4f %8.4f %8.4f %14d %10.2f %16d %9.1f" % (
            r["name"], r["r1"], r["r10"], r["mrr"], r["reembedded"], r["reembedded"] / task.N,
            r["loss_encodings"], r["time"]))
    for r in results:
        for note in r["notes"]:
            print("  %s: %s" % (r["name"], note))
    print()
    by = {r["name"]: r for r in results}
    fresh = by.get("fresh")
    corr = by.get("corrected")
    periodic = sorted((r for r in results if r["name"].startswith("periodic")),
                      key=lambda r: r["reembedded"])
    if corr and fresh:
        for key, label in (("r1", "R@1"), ("r10", "R@10")):
            print("corrected / fresh %s: %.1f%% (criterion >= 97%%)"
                  % (label, 100.0 * corr[key] / max(fresh[key], 1e-12)))
    if corr and periodic:
        for key, label in (("r1", "R@1"), ("r10", "R@10")):
            cost = equal_accuracy_cost(periodic, key, corr[key])
            if cost is None:
                best = max(periodic, key=lambda r: r[key])
                print("%s: no periodic run reached the corrected run's %.4f (best %s %.4f with "
                      "%d re-embeddings, %.1fx the corrected run's %d)"
                      % (label, corr[key], best["name"], best[key], best["reembedded"],
                         best["reembedded"] / max(corr["reembedded"], 1), corr["reembedded"]))
            else:
                print("%s: periodic refresh of equal accuracy needs ~%d re-embeddings "
                      "(interpolated), %.1fx the corrected run's %d (criterion >= 4x)"
                      % (label, cost, cost / max(corr["reembedded"], 1), corr["reembedded"]))
    print("total wall time %.0f s" % total)


def equal_accuracy_cost(periodic, key, target):
    """Re-embeddings a periodic refresh needs to reach target accuracy,
    interpolated linearly in accuracy between the runs made (None if none
    reached it)."""
    pts = sorted((r["reembedded"], r[key]) for r in periodic)
    if pts[0][1] >= target:
        return pts[0][0]
    for (c0, a0), (c1, a1) in zip(pts, pts[1:]):
        if a1 >= target > a0:
            return c0 + (c1 - c0) * (target - a0) / (a1 - a0)
    return None


if __name__ == "__main__":
    sys.exit(main())
