#!/usr/bin/python3
"""freshd in a PyTorch training loop: a dual encoder for a dictionary task
on WordNet, with hard negatives from freshd and the fresh target embeddings
it computes anyway sent back, compared with the usual ways of getting
negatives at equal steps and the same batch order.

    /usr/bin/python3 clients/python/examples/torch_wordnet.py [--quick]
        [--seeds 1,2,3] [--steps N] [--freshd PATH] [--out DIR]

Needs Debian's python3-torch, python3-numpy, wordnet-base and fasttext.

Task.  WordNet 3.0 (wordnet-base): every synset's definition (its gloss
up to the first quoted example) is a target; a lemma that names exactly
one synset is a query whose only relevant target is that synset's
definition ("honeybee" -> "social bee often domesticated for the honey
it produces").  Synsets with the same definition text are merged away,
so every query has one right answer among ~117k targets, many of them
near-duplicates (the definitions of sister terms), which is what hard
negatives are for.  2,000 queries are held out for evaluation; their
targets stay in the corpus.

Towers.  Each tower is a mean of token vectors (nn.EmbeddingBag) and a
linear map, unit-normalised.  The token vectors are pretrained without
labels: fastText skip-gram on the definitions alone (no lemma-definition
pairing is ever seen), subword vectors for words the definitions lack.
Both towers start from these vectors and the identity map, so step 0 is
a weak zero-shot retriever, and training moves the target tower a
moderate distance: the regime a corrector is for. (--tower-hidden H adds
an MLP branch of width H to each tower, its output zero at step 0.)

Loss.  Softmax cross-entropy at temperature 0.05 of each query against
its positive and its own n sampled negatives (--loss own, the default;
--loss pooled scores every query against every target the step encoded,
which lets the other queries' positives stand in for hard negatives and
made staleness cost nothing in our probes).  In-batch runs always pool.
Adam (sparse for the token vectors) at 1e-2, the same for every method
(--table-lr sets the token vectors' rate apart).

Negatives (n per query, positives excluded):
  zeroshot   no training: the pretrained towers as they start;
  inbatch    none: only the other queries' positives;
  stale      drawn by freshd from the index of step 0, never refreshed
             (--corrector none);
  periodic-R the same, but every R steps the whole corpus is re-embedded
             and swapped in (POST /v1/index/reload);
  freshd     drawn by freshd from its corrected index; every step the
             fresh embeddings of the targets the loss encoded go to
             POST /v1/updates, and every K steps a refit runs
             (refit?wait=true, so a run is reproducible);
  oracle     re-embed the corpus every step and draw from exact scores
             (in torch): the upper bound;
  writeback  no daemon, no corrector, not run by default: the step-0
             cache, where every row the loss encoded is overwritten with
             that fresh embedding (in torch). What the embeddings a step
             computes anyway are worth by themselves;
  freshd-rows  freshd started with --serve-fresh-rows: each refit also
             publishes its pairs' fresh rows, and freshd scores those
             targets by them instead of h(stale); between refits the
             rows are also published every --rows-every K steps (1),
             without training (refit?rows_only=true);
  freshd-aged  freshd-rows with --age-fresh-rows: each publish fits an
             affine map from the rows freshd served to the rows that
             replaced them and moves every other served row by it, so
             that rows written hundreds of steps ago follow the encoder;
  freshd-writeback  not run by default: freshd's updates and refits as
             in freshd, but negatives drawn in torch from the rows the
             loss last encoded where there is one and freshd's corrected
             rows (POST /v1/corrected after each refit) elsewhere: the
             simulation freshd-rows was built from (it differs in that
             freshd-rows serves a row only from the refit after it came);
  writeback-projected  not run by default, a probe of what ages the
             written rows: writeback, but each row is the target's token
             vectors as last encoded under the current projection
             (normalize(P_now x_then)), so that only the token vectors'
             moves since a row was written are missing from it;
  writeback-aged  not run by default: writeback, but each row written
             at step t is moved by a linear map of its birth bucket
             (t // K, K = --refit-every), fitted every K steps by ridge on
             the last K steps' re-encodings of rows born then (a target's
             previous row and its new one); the never-written rows are
             rows of step 0;
  freshd-delta  not run by default: freshd-writeback, but each written
             row moves as freshd's corrected row of its target moved since
             the row came (row + h_now(s) - h_then(s), normalised): whether
             the corrector can age the rows it is sent.
Negatives are drawn from softmax(score / T) without replacement
(Gumbel-top-k, method "sample"), T = 0.05.

Counted: corpus embeddings (targets encoded only to index them: N at step
0, N per refresh), target-tower encodings for the loss, wall time.
Evaluated: R@1, R@10, MRR of the held-out queries over all targets with
the final towers, and, for the daemons (and the methods that draw from
rows in torch), how many of the final fresh top-10 their index finds (how
stale the negatives were), at the end and at each --eval-every step;
drift_split: how much of the target rows' drift is the tower's head
moving and how much its token vectors (see drift_split()).
--drift-probe adds, after each run, what of the drift maps of the stale
rows fitted in torch can undo, and freshd's corrector beside them.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from train_loop import Daemon, save_npy, wait_reload  # noqa: E402

WORDNET = "/usr/share/wordnet"
TOKEN = re.compile(r"[a-z0-9]+")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def tokens(text):
    return TOKEN.findall(text.lower())


def load_wordnet(root=WORDNET):
    """(definitions, queries): definition texts, and (lemma, target) pairs
    for lemmas that name one synset whose definition is unique."""
    synsets = []  # (lemmas, definition)
    for pos in ("noun", "verb", "adj", "adv"):
        path = os.path.join(root, "data." + pos)
        with open(path, encoding="latin-1") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:
                    continue  # licence header
                head, gloss = line.split(" | ", 1)
                fields = head.split()
                count = int(fields[3], 16)
                lemmas = [fields[4 + 2 * i].lower() for i in range(count)]
                definition = gloss.split('"', 1)[0].strip().rstrip(";").strip()
                if definition:
                    synsets.append((lemmas, definition))
    by_text = {}
    for lemmas, definition in synsets:
        by_text.setdefault(definition, []).append(lemmas)
    unique = [(ls[0], d) for d, ls in by_text.items() if len(ls) == 1]
    senses = {}
    for lemmas, _ in synsets:
        for lemma in lemmas:
            senses[lemma] = senses.get(lemma, 0) + 1
    definitions, pairs = [], []
    for lemmas, definition in unique:
        t = len(definitions)
        definitions.append(definition)
        for lemma in lemmas:
            lemma = re.sub(r"\(.*\)$", "", lemma)  # adjective markers
            if senses.get(lemma) == 1 and tokens(lemma.replace("_", " ")):
                pairs.append((lemma.replace("_", " "), t))
    return definitions, pairs


def pretrain_vectors(definitions, words, dim, workdir, seed):
    """fastText skip-gram on the definitions; vectors for words (subword
    vectors for those the definitions lack)."""
    corpus = os.path.join(workdir, "definitions.txt")
    with open(corpus, "w") as f:
        for d in definitions:
            f.write(" ".join(tokens(d)) + "\n")
    model = os.path.join(workdir, "ft")
    subprocess.run(["fasttext", "skipgram", "-input", corpus, "-output", model, "-dim",
                    str(dim), "-epoch", "5", "-minCount", "2", "-thread", "1", "-seed",
                    str(seed), "-verbose", "0"], check=True)
    out = subprocess.run(["fasttext", "print-word-vectors", model + ".bin"],
                         input="\n".join(words) + "\n", capture_output=True, text=True,
                         check=True).stdout
    vecs = np.zeros((len(words), dim), np.float32)
    for i, line in enumerate(out.splitlines()[:len(words)]):
        vecs[i] = np.array(line.split()[1:], np.float32)
    return vecs


class Bags:
    """Token id lists of texts, as the (flat, offsets) pair EmbeddingBag takes."""

    def __init__(self, texts, vocab):
        self.ids = [np.array([vocab[w] for w in tokens(t)] or [0], np.int64) for t in texts]

    def batch(self, rows):
        parts = [self.ids[r] for r in rows]
        offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
        return torch.from_numpy(np.concatenate(parts)), torch.from_numpy(offsets)


def token_table(vectors):
    """A trainable table of token vectors, initialised with a copy of
    vectors: from_pretrained keeps the tensor it is given as the parameter,
    and torch.from_numpy would share the array's memory, so training would
    change the pretrained vectors the next run starts from."""
    return torch.nn.EmbeddingBag.from_pretrained(torch.tensor(vectors), freeze=False,
                                                 mode="mean", sparse=True)


def zero_mlp(dim, hidden):
    """dim -> hidden -> dim with ReLU, its output zero until trained, so a
    residual branch made of it starts as the identity."""
    mlp = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, dim))
    torch.nn.init.zeros_(mlp[2].weight)
    torch.nn.init.zeros_(mlp[2].bias)
    return mlp


class Tower(torch.nn.Module):
    """normalize(P x + W2 relu(W1 x + b1)), x the mean of the text's token
    vectors; P starts as the identity and W2 as zero, so every tower starts
    as the pretrained vectors' mean. hidden 0 drops the MLP branch."""

    def __init__(self, bag, hidden=0):
        super().__init__()
        self.bag = bag
        dim = bag.weight.shape[1]
        self.proj = torch.nn.Linear(dim, dim, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(dim))
        self.mlp = zero_mlp(dim, hidden) if hidden else None

    def dense(self):
        """The parameters past the token vectors."""
        return [p for n, p in self.named_parameters() if not n.startswith("bag.")]

    def forward(self, flat, offsets):
        x = self.bag(flat, offsets)
        y = self.proj(x)
        if self.mlp is not None:
            y = y + self.mlp(x)
        return F.normalize(y, dim=1)


class Task:
    def __init__(self, args, workdir):
        definitions, pairs = load_wordnet()
        rng = np.random.default_rng(0)
        order = rng.permutation(len(pairs))
        n_test = min(2000, len(pairs) // 10)
        self.test = [pairs[i] for i in order[:n_test]]
        self.train = [pairs[i] for i in order[n_test:]]
        self.definitions = definitions
        words = sorted({w for t in definitions for w in tokens(t)} |
                       {w for q, _ in pairs for w in tokens(q)})
        self.vocab = {w: i for i, w in enumerate(words)}
        self.vectors = pretrain_vectors(definitions, words, args.dim, workdir, 1)
        self.targets = Bags(definitions, self.vocab)
        self.n = len(definitions)
        log("task: %d targets, %d training queries, %d held out, vocabulary %d" %
            (self.n, len(self.train), len(self.test), len(words)))


def embed_all(tower, bags, n, chunk=8192):
    out = np.empty((n, tower.proj.weight.shape[0]), np.float32)
    with torch.no_grad():
        for i in range(0, n, chunk):
            rows = range(i, min(n, i + chunk))
            out[i:i + len(rows)] = tower(*bags.batch(rows)).numpy()
    return out


def held_out_ranks(task, qt, T):
    """Rank of each held-out query's target among the rows of T (n x d,
    a tensor), scored with the query tower qt."""
    qbags = Bags([q for q, _ in task.test], task.vocab)
    with torch.no_grad():
        Q = qt(*qbags.batch(range(len(task.test))))
    pos = torch.tensor([t for _, t in task.test])
    s = Q @ T.T
    return (s > s.gather(1, pos[:, None])).sum(1)


def fresh_top10(final_T, seed):
    """200 probe rows of the final corpus and their exact top-10 in it."""
    rng = np.random.default_rng(seed)
    probe = final_T[rng.choice(len(final_T), 200, replace=False)] + 0.0
    return probe, np.argsort(-(probe @ final_T.T), axis=1)[:, :10]


def top10_found(probe, want, V):
    """The share of the probes' exact top-10 that the rows V put in theirs."""
    got = np.argsort(-(probe @ V.T), axis=1)[:, :10]
    return float(np.mean([len(set(w) & set(g)) / 10 for w, g in zip(want, got)]))


# Negatives drawn in torch from rows the loss wrote.
WRITES = ("writeback", "freshd-writeback", "freshd-delta", "writeback-projected", "writeback-aged")


def age_maps(window, width, min_pairs=128, lam=1.0):
    """Per birth bucket (rows encoded at steps [b w, (b+1) w)), the linear
    map A = I + B that takes such a row to the one encoded now, fitted by
    ridge (B toward zero) on the window's re-encodings of such rows."""
    prev = torch.cat([p for p, _, _ in window])
    new = torch.cat([n for _, n, _ in window])
    bucket = torch.cat([b for _, _, b in window]) // width
    maps = {}
    for b in bucket.unique().tolist():
        sel = bucket == b
        if int(sel.sum()) < min_pairs:
            continue
        X, Y = prev[sel].double(), new[sel].double()
        d = X.shape[1]
        B = torch.linalg.solve(X.T @ X + lam * torch.eye(d, dtype=X.dtype), X.T @ (Y - X))
        maps[b] = (torch.eye(d, dtype=X.dtype) + B).float()
    return maps


def aged_rows(raw, born, maps, width):
    """Each row moved by the map of its birth bucket (as it is, without one)."""
    out = raw.clone()
    bucket = born // width
    for b, A in maps.items():
        sel = bucket == b
        if bool(sel.any()):
            out[sel] = F.normalize(raw[sel] @ A, dim=1)
    return out


def token_means(task, tt):
    """Every target's mean token vector in the target tower (no gradient)."""
    with torch.no_grad():
        return torch.cat([tt.bag(*task.targets.batch(range(i, min(task.n, i + 8192))))
                          for i in range(0, task.n, 8192)])


def drift_split(task, tt, stale0, final_T):
    """Where the target rows' drift comes from, with a linear tower head
    (row = normalize(P x), x the mean of the text's token vectors): the
    mean squared distance to the final rows of the stale rows; of the
    step-0 token means under the final P (left when only the head is
    brought up to date: the token vectors' share); and of the final token
    means under the step-0 P, the identity (left when only the token
    vectors are: the head's share)."""
    with torch.no_grad():
        x = token_means(task, tt)
        P = tt.proj.weight
        final = torch.from_numpy(final_T)
        s0 = torch.from_numpy(stale0)  # normalize(x0): P starts as the identity

        def msd(a):
            return round(float(((a - final) ** 2).sum(1).mean()), 5)
        return {"stale": msd(s0), "old_tokens_final_projection": msd(F.normalize(s0 @ P.T, dim=1)),
                "final_tokens_old_projection": msd(F.normalize(x, dim=1))}


def index_overlap(daemon, rows, now_T, seed):
    """How much of the fresh top-10 (of now_T's probes) the index finds:
    the daemon's, or the rows a torch method draws from; None for neither."""
    if daemon is None and rows is None:
        return None
    probe, want = fresh_top10(now_T, seed)
    if rows is not None:
        return top10_found(probe, want, rows.numpy())
    got = daemon.client.search(probe, k=10)["results"]
    return float(np.mean([len(set(w) & {h["id"] for h in g}) / 10 for w, g in zip(want, got)]))


def evaluate(task, qt, tt):
    T = torch.from_numpy(embed_all(tt, task.targets, task.n))
    rank = held_out_ranks(task, qt, T)
    return {"r1": float((rank < 1).float().mean()), "r10": float((rank < 10).float().mean()),
            "mrr": float((1.0 / (rank + 1).float()).mean())}, T.numpy()


def corrected_all(client, n, chunk=4096):
    """Every row's corrected vector as freshd scores it (POST /v1/corrected)."""
    return np.concatenate([np.asarray(client.corrected(range(i, min(n, i + chunk)))["vectors"],
                                      np.float32) for i in range(0, n, chunk)])


def gumbel_topk(scores, n, temperature, exclude, gen):
    """n draws without replacement from softmax(scores / T), per row."""
    z = scores / temperature
    u = torch.rand(z.shape, generator=gen).clamp_(1e-12, 1 - 1e-7)
    keys = z - torch.log(-torch.log(u))
    keys[torch.arange(len(exclude)), exclude] = -float("inf")
    return keys.topk(n, dim=1).indices


def fit_map(S, F_, train, hidden, seed, epochs):
    """The best map of the stale vector this training budget finds: a
    residual MLP (hidden > 0) or least squares (hidden 0) from S[train] to
    F_[train], rows unit-normalised, as freshd's corrector is."""
    S, F_ = torch.from_numpy(S), torch.from_numpy(F_)
    if hidden == 0:
        A = torch.linalg.lstsq(S[train], F_[train]).solution
        return F.normalize(S @ A, dim=1).numpy()
    g = torch.Generator().manual_seed(seed)
    net = zero_mlp(S.shape[1], hidden)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    tr = torch.from_numpy(train)
    for _ in range(epochs):
        for b in torch.randperm(len(tr), generator=g).split(1024):
            rows = tr[b]
            out = F.normalize(S[rows] + net(S[rows]), dim=1)
            loss = ((out - F_[rows]) ** 2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return F.normalize(S + net(S), dim=1).numpy()


def drift_probe(task, args, qt, tt, stale0, final_T, seed, corrected=None, pairs=None,
                served="freshd's corrector"):
    """What of the drift a map of the stale vector can undo. The stale
    row is the normalized mean x of the text's step-0 token vectors: a
    change of the dense layers acts on x (for the linear tower, as a
    linear map of the stale row), a change of the token vectors E is a
    different change for every text, which no map of the stale row can
    know. So the view "final dense layers, step-0 token vectors" is about
    what a corrector could reach if it were perfect on the dense part. For
    each view of the corpus: mean squared distance to the final rows on
    10% of targets no fit saw, the share of the final fresh top-10 it finds
    (200 probes, as fresh_top10_overlap), and the held-out queries' R@10
    scored against it with the final query tower."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(task.n)
    held, train = perm[:task.n // 10], perm[task.n // 10:]
    probe, want = fresh_top10(final_T, seed)
    frozen = Tower(torch.nn.EmbeddingBag.from_pretrained(torch.tensor(task.vectors), mode="mean"),
                   args.tower_hidden)
    with torch.no_grad():
        for a, b in zip(frozen.dense(), tt.dense()):
            a.copy_(b)
    views = [("stale (step 0)", stale0),
             ("final dense layers, step-0 token vectors", embed_all(frozen, task.targets, task.n))]
    for hidden in (0, 256, 1024):
        views.append(("fit on final rows: %s" % ("least squares" if hidden == 0 else
                                               "MLP %d" % hidden),
                      fit_map(stale0, final_T, train, hidden, seed, args.probe_epochs)))
    if pairs is not None:  # what freshd's corrector is fitted to: each id's newest fresh row
        rows, row_step, steps = pairs
        for lag in (0, 100):
            have = np.flatnonzero(row_step >= (max(steps - lag, 0) if lag else 0))
            views.append(("fit on newest fresh rows%s: MLP 256" %
                          (" of the last %d steps" % lag if lag else ""),
                          fit_map(stale0, rows, np.intersect1d(have, train), 256, seed,
                                  args.probe_epochs)))
    if corrected is not None:
        views.append((served, corrected))
    out = []
    for name, V in views:
        rank = held_out_ranks(task, qt, torch.from_numpy(V))
        out.append({"view": name,
                    "held_sq_dist": float(((V[held] - final_T[held]) ** 2).sum(1).mean()),
                    "fresh_top10_overlap": top10_found(probe, want, V),
                    "r10_final_queries": float((rank < 10).float().mean())})
        log("drift probe: %s" % json.dumps(out[-1]))
    return out


def run(task, args, method, seed, freshd_bin, workdir):
    """Trains with one method; returns its figures."""
    torch.manual_seed(seed)
    if method == "writeback-projected" and args.tower_hidden:
        raise SystemExit("writeback-projected needs --tower-hidden 0 (a linear tower head)")
    if args.towers == "shared":  # one token table, a projection each
        bag = token_table(task.vectors)
        qt, tt = Tower(bag, args.tower_hidden), Tower(bag, args.tower_hidden)
        tables = [bag.weight]
    else:
        qt, tt = (Tower(token_table(task.vectors), args.tower_hidden),
                  Tower(token_table(task.vectors), args.tower_hidden))
        tables = [qt.bag.weight, tt.bag.weight]
    # Sparse Adam for the token vectors (a step touches few of them), Adam
    # for the projections.
    opts = [torch.optim.SparseAdam(tables, lr=args.lr if args.table_lr is None else args.table_lr),
            torch.optim.Adam(qt.dense() + tt.dense(), lr=args.lr)]
    qbags = Bags([q for q, _ in task.train], task.vocab)
    order = np.random.default_rng(seed).permutation(len(task.train))
    # The negatives' random stream: the seed's, unless --sample-seed moves
    # it (same batch order, other draws: how much a run owes to its draws).
    sseed = seed if args.sample_seed is None else args.sample_seed
    gen = torch.Generator().manual_seed(sseed)
    t0 = time.time()
    corpus_embeddings, encodings, daemon, period = task.n, 0, None, 0
    stale0 = embed_all(tt, task.targets, task.n)  # the cache at step 0 (not counted)
    corrects = method in ("freshd", "freshd-rows", "freshd-aged", "freshd-writeback",
                          "freshd-delta")
    serves_rows = method in ("freshd-rows", "freshd-aged")
    if method not in ("inbatch", "oracle", "zeroshot", "writeback"):
        d = tempfile.mkdtemp(prefix="freshd-torch-", dir=workdir)
        save_npy(os.path.join(d, "index.npy"), stale0)
        flags = ["--corrector", "none"] if not corrects else [
            "--corrector", args.corrector, "--normalize-output", "on", "--min-pairs", "256",
            "--refit-every-pairs", "0", "--refit-every-seconds", "0",
            "--max-step-lag", str(args.max_step_lag)] + args.freshd_flags.split()
        if serves_rows:
            flags.append("--serve-fresh-rows")
        if method == "freshd-aged":
            flags.append("--age-fresh-rows")
        daemon = Daemon(freshd_bin, "index.npy", d, flags)
        if method.startswith("periodic-"):
            period = int(method.split("-")[1])
    fresh_T, curve, eval_s = None, [], 0.0
    if args.drift_probe and corrects:  # what freshd holds: each id's newest fresh row
        last_row, last_step = stale0.copy(), np.full(task.n, -1)
    for step in range(0 if method == "zeroshot" else args.steps):
        rows = order[(step * args.batch) % len(order):][:args.batch]
        if len(rows) < args.batch:
            rows = np.concatenate([rows, order[:args.batch - len(rows)]])
        pos = np.array([task.train[r][1] for r in rows])
        q = qt(*qbags.batch(rows))
        if method == "inbatch":
            cand = np.unique(pos)
        else:
            if method == "oracle" or method in WRITES:
                if method == "oracle":
                    fresh_T = torch.from_numpy(embed_all(tt, task.targets, task.n))
                    corpus_embeddings += task.n
                elif method == "writeback-aged":
                    if fresh_T is None:  # every row, its step, the step's re-encodings
                        raw = torch.from_numpy(stale0.copy())
                        born = torch.zeros(task.n, dtype=torch.long)
                        window, maps = [], {}
                    fresh_T = aged_rows(raw, born, maps, args.refit_every)
                elif method == "writeback-projected":
                    if fresh_T is None:  # each target's token-vector mean as last encoded
                        M = token_means(task, tt)
                    fresh_T = F.normalize(M @ tt.proj.weight.detach().T, dim=1)
                elif fresh_T is None:
                    fresh_T = torch.from_numpy(stale0.copy())
                    written = torch.zeros(task.n, dtype=torch.bool)
                    if method == "freshd-delta":  # each written row and h(stale) when it came
                        raw, base = fresh_T.clone(), fresh_T.clone()
                        C = torch.from_numpy(corrected_all(daemon.client, task.n))
                neg = gumbel_topk(q.detach() @ fresh_T.T, args.negatives, args.temperature,
                                  torch.from_numpy(pos), gen).numpy()
            else:
                out = daemon.client.negatives(q.detach().numpy(), positives=[[int(p)] for p in pos],
                                              n=args.negatives, method="sample",
                                              temperature=args.temperature, seed=sseed * 100003 + step)
                neg = np.array([[h["id"] for h in r] for r in out["results"]])
            cand = np.unique(np.concatenate([pos, neg.ravel()]))
        t = tt(*task.targets.batch(cand))
        encodings += len(cand)
        if method == "writeback-aged":
            c_ = torch.from_numpy(cand)
            window.append((raw[c_].clone(), t.detach().clone(), born[c_].clone()))
            raw[c_], born[c_] = t.detach(), step
            if (step + 1) % args.refit_every == 0:
                maps = age_maps(window, args.refit_every)
                window = []
        if method == "writeback-projected":
            with torch.no_grad():
                M[torch.from_numpy(cand)] = tt.bag(*task.targets.batch(cand))
        if args.loss == "own" and method != "inbatch":
            # Each query against its positive and its own negatives only:
            # what the negatives are decides what the step teaches.
            idx = torch.from_numpy(np.searchsorted(cand, np.concatenate([pos[:, None], neg], 1)))
            logits = (q[:, None, :] * t[idx]).sum(-1) / args.tau
            loss = F.cross_entropy(logits, torch.zeros(len(rows), dtype=torch.long))
        else:
            labels = torch.from_numpy(np.searchsorted(cand, pos))
            loss = F.cross_entropy(q @ t.T / args.tau, labels)
        for o in opts:
            o.zero_grad()
        loss.backward()
        for o in opts:
            o.step()
        if args.eval_every and (step + 1) % args.eval_every == 0:
            # Before this step's rows, refits or refresh change the index:
            # the overlap is that of the index the step drew from.
            te = time.time()
            point, now_T = evaluate(task, qt, tt)
            overlap = index_overlap(daemon, fresh_T if method in WRITES else None, now_T, seed)
            if overlap is not None:
                point["fresh_top10_overlap"] = overlap
            curve.append(dict(step=step + 1, **point))
            eval_s += time.time() - te
        if method in ("writeback", "freshd-writeback", "freshd-delta"):
            fresh_T[torch.from_numpy(cand)] = t.detach()
            written[torch.from_numpy(cand)] = True
            if method == "freshd-delta":
                raw[torch.from_numpy(cand)] = t.detach()
                base[torch.from_numpy(cand)] = C[torch.from_numpy(cand)]
        if corrects:
            if args.drift_probe:
                last_row[cand], last_step[cand] = t.detach().numpy(), step
            if args.with_queries:
                daemon.client.update(cand.tolist(), t.detach().numpy(), step=step,
                                     queries=q.detach().numpy(), positives=pos.tolist())
            else:
                daemon.client.update(cand.tolist(), t.detach().numpy(), step=step)
            if (step + 1) % args.refit_every == 0:
                daemon.client.refit(wait=True)
                if method == "freshd-writeback":  # corrected rows where none was written
                    fresh_T = torch.where(written[:, None], fresh_T,
                                          torch.from_numpy(corrected_all(daemon.client, task.n)))
                elif method == "freshd-delta":  # written rows moved as h moved since they came
                    C = torch.from_numpy(corrected_all(daemon.client, task.n))
                    fresh_T = torch.where(written[:, None], F.normalize(raw + C - base, dim=1), C)
            elif serves_rows and args.rows_every and (step + 1) % args.rows_every == 0:
                daemon.client.refit(wait=True, rows_only=True)  # no training: the rows, served
        if period and (step + 1) % period == 0 and step + 1 < args.steps:
            name = "index-%d.npy" % (step + 1)
            save_npy(os.path.join(daemon.data_dir, name), embed_all(tt, task.targets, task.n))
            daemon.client.request("POST", "/v1/index/reload", {"path": name})
            wait_reload(daemon.client, name)
            if step + 1 > period:  # the index this one replaced
                os.unlink(os.path.join(daemon.data_dir, "index-%d.npy" % (step + 1 - period)))
            corpus_embeddings += task.n
    wall = time.time() - t0 - eval_s
    metrics, final_T = evaluate(task, qt, tt)
    res = dict(method=method, seed=seed, steps=0 if method == "zeroshot" else args.steps, corpus_embeddings=corpus_embeddings,
               corpus_passes=corpus_embeddings / task.n, loss_encodings=encodings,
               wall_s=round(wall, 1), curve=curve, **metrics)
    overlap = index_overlap(daemon, fresh_T if method in WRITES else None, final_T, seed)
    if overlap is not None:
        res["fresh_top10_overlap"] = overlap
    if not args.tower_hidden and method != "zeroshot":
        res["drift_split"] = drift_split(task, tt, stale0, final_T)
    if args.drift_probe and (method == "freshd" or not args.quick):  # quick: freshd's run only
        res["drift_probe"] = drift_probe(task, args, qt, tt, stale0, final_T, seed,
                                         corrected_all(daemon.client, task.n) if corrects else None,
                                         (last_row, last_step, args.steps) if corrects else None,
                                         "freshd's served rows" if serves_rows
                                         else "freshd's corrector")
    if daemon:
        if corrects:
            res["holdout"] = daemon.client.corrector().get("holdout")
        daemon.stop()
        shutil.rmtree(daemon.data_dir, ignore_errors=True)
    log(json.dumps(res))
    return res


def summarize(results, methods):
    rows = []
    for m in methods:
        rs = [r for r in results if r["method"] == m]
        if not rs:
            continue
        row = {"method": m, "seeds": len(rs)}
        for k in ("r1", "r10", "mrr", "corpus_passes", "loss_encodings", "wall_s",
                  "fresh_top10_overlap"):
            v = [r[k] for r in rs if r.get(k) is not None]
            if v:
                row[k] = (float(np.mean(v)), float(np.min(v)), float(np.max(v)))
        rows.append(row)
    return rows


def table(rows):
    lines = ["| method | R@1 | R@10 | MRR | corpus embeddings (x N) | loss encodings | wall s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]

    def cell(row, k, scale=100.0, fmt="%.1f"):
        if k not in row:
            return ""
        m, lo, hi = row[k]
        return (fmt + " (" + fmt + "-" + fmt + ")") % (m * scale, lo * scale, hi * scale)
    for r in rows:
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            r["method"], cell(r, "r1"), cell(r, "r10"), cell(r, "mrr"),
            cell(r, "corpus_passes", 1.0, "%.0f"), cell(r, "loss_encodings", 1.0, "%.0f"),
            cell(r, "wall_s", 1.0, "%.0f")))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few steps, four methods (CI)")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--sample-seed", type=int, default=None,
                    help="seed of the negatives' draws (default: the run's seed; the batch "
                         "order and initialisation stay the run's)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--negatives", type=int, default=16)
    ap.add_argument("--temperature", type=float, default=0.05, help="of the negatives' softmax")
    ap.add_argument("--tau", type=float, default=0.05, help="of the loss")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--table-lr", type=float, default=None,
                    help="learning rate of the token vectors (default: --lr)")
    ap.add_argument("--loss", choices=("own", "pooled"), default="own",
                    help="each query against its own negatives, or against every target the step encoded")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--towers", choices=("shared", "separate"), default="shared",
                    help="one token table for both towers (each its own projection), or one each")
    ap.add_argument("--tower-hidden", type=int, default=0,
                    help="an MLP branch of this width in each tower (0: mean of token vectors and a linear map)")
    ap.add_argument("--refit-every", type=int, default=25)
    ap.add_argument("--rows-every", type=int, default=1,
                    help="freshd-rows: between refits, publish the fresh rows every so many "
                         "steps (POST /v1/refit?rows_only=true; 0: only with refits)")
    ap.add_argument("--corrector", default="mlp")
    ap.add_argument("--max-step-lag", type=int, default=0,
                    help="the corrector forgets pairs this many steps old (0: keeps all)")
    ap.add_argument("--with-queries", action="store_true",
                    help="send the step's queries with its updates (the refit's logit term)")
    ap.add_argument("--drift-probe", action="store_true",
                    help="after training, measure what of the drift a map of the stale vector can undo")
    ap.add_argument("--probe-epochs", type=int, default=30, help="of the drift probe's MLP fits")
    ap.add_argument("--freshd-flags", default="", help="more flags for the freshd daemon")
    ap.add_argument("--periods", default="50,100,150,300")
    ap.add_argument("--methods", default=None)
    ap.add_argument("--eval-every", type=int, default=100,
                    help="held-out accuracy every so many steps (not timed)")
    ap.add_argument("--freshd", default=os.path.join(HERE, "..", "..", "..", "build", "server",
                                                      "freshd"))
    ap.add_argument("--out", default=None, help="write results.json and table.md here")
    args = ap.parse_args(argv)
    if args.quick:
        # The whole corpus (a small one trains into collapse within a few
        # dozen steps, which tests nothing), few steps.
        args.steps, args.seeds, args.periods, args.eval_every = 40, "1", "20", 0
        args.refit_every = 10
        args.probe_epochs = 3
        args.methods = args.methods or "stale,freshd,freshd-rows,freshd-aged,periodic-20,writeback"
    if not os.path.isdir(WORDNET) or not os.path.exists(os.path.join(WORDNET, "data.noun")):
        log("WordNet is missing: apt-get install wordnet-base")
        return 3
    torch.set_num_threads(2)
    methods = args.methods.split(",") if args.methods else (
        ["zeroshot", "inbatch", "stale", "freshd", "freshd-rows", "freshd-aged"] +
        ["periodic-%s" % p for p in args.periods.split(",")] +
        ["oracle"])
    workdir = tempfile.mkdtemp(prefix="freshd-torch-")
    try:
        rc = train_all(args, methods, workdir)
    except BaseException:
        log("kept %s (the daemons' logs)" % workdir)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    return rc


def train_all(args, methods, workdir):
    """Every seed and method; writes and checks the results."""
    task = Task(args, workdir)
    pristine = task.vectors.copy()
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for m in methods:
            results.append(run(task, args, m, seed, os.path.abspath(args.freshd), workdir))
            # Every run starts from the same pretrained vectors.
            assert np.array_equal(task.vectors, pristine), "a run changed the pretrained vectors"
    rows = summarize(results, methods)
    print(table(rows))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.json"), "w") as f:
            # Where things are on this machine is no part of the result.
            kept = {k: v for k, v in vars(args).items() if k not in ("freshd", "out")}
            json.dump({"args": kept, "results": results}, f, indent=1)
        with open(os.path.join(args.out, "table.md"), "w") as f:
            f.write(table(rows) + "\n")
    if args.quick:
        # The plumbing worked, and the corrected index tracks the drift
        # training made better than the stale one does.
        by = {r["method"]: r for r in results}
        ok = True
        for m in ("freshd", "freshd-rows", "freshd-aged"):
            if m in by:
                good = by[m]["fresh_top10_overlap"] > by["stale"]["fresh_top10_overlap"]
                log("quick check: fresh top-10 overlap %s %.3f vs stale %.3f: %s" % (
                    m, by[m]["fresh_top10_overlap"], by["stale"]["fresh_top10_overlap"],
                    "ok" if good else "FAILED"))
                ok = ok and good
        if args.drift_probe:
            # The probe's views of the freshd run: its corrector's rows are
            # closer to the final ones than the stale rows, and so are the
            # fitted maps'.
            views = {v["view"]: v["held_sq_dist"] for v in by["freshd"]["drift_probe"]}
            stale = views.pop("stale (step 0)")
            probe_ok = len(views) == 7 and all(d < stale for d in views.values())
            log("quick check: drift probe, every view closer to the final rows than stale "
                "(%.4f): %s" % (stale, "ok" if probe_ok else "FAILED"))
            ok = ok and probe_ok
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
