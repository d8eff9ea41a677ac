"""Data for the correction-quality benchmark (tests/bench/drift.py).

Two sources of (stale, fresh) embedding pairs:

- synthetic drifts with known structure on clustered unit-norm stale
  embeddings (linear, nonlinear, rotation + nonlinearity at growing
  magnitude), all seeded;
- a real drift nobody here wrote: Debian's fasttext skipgram trained on a
  corpus of English text from the Debian packages installed locally, for
  a few epochs (stale) and for more epochs (fresh), same settings and seed.
  The corpus and both models are cached under a directory the caller names.

Standard library + numpy only.
"""

import glob
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import time

import numpy as np


def _normalize(x):
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


# --------------------------------------------------------------------------
# Synthetic drifts
# --------------------------------------------------------------------------

def clustered_stale(n, d, seed, clusters=None):
    """n unit-norm vectors in d dims around `clusters` random centres, with a
    spread of cluster tightness so neighbourhoods are neither trivial nor
    random."""
    rng = np.random.default_rng(seed)
    if clusters is None:
        clusters = max(8, n // 100)
    centres = _normalize(rng.standard_normal((clusters, d)))
    assign = rng.integers(0, clusters, size=n)
    spread = rng.uniform(0.5, 1.2, size=clusters)  # per-cluster radius
    noise = rng.standard_normal((n, d)) / np.sqrt(d)
    s = centres[assign] + spread[assign, None] * noise
    return _normalize(s).astype(np.float32)


def _random_matrix(rng, d, scale):
    """d x d Gaussian with operator scale ~ `scale` (entries N(0, scale²/d))."""
    return rng.standard_normal((d, d)) * (scale / np.sqrt(d))


def _expm_skew(k):
    """exp(K) of a real skew-symmetric K (an orthogonal matrix), through the
    eigen-decomposition of the Hermitian iK."""
    w, v = np.linalg.eigh(1j * k)
    r = (v * np.exp(-1j * w)) @ v.conj().T
    return np.real(r)


def drift_linear(s, seed, scale=0.6):
    """g = s + A s, A small random. Not normalized: the fresh vectors' norms
    vary, which also checks that nothing assumes unit-norm fresh vectors."""
    rng = np.random.default_rng(seed)
    d = s.shape[1]
    a = _random_matrix(rng, d, scale)
    g = s.astype(np.float64) + s.astype(np.float64) @ a.T
    return g.astype(np.float32), {"family": "g = s + A s", "scale": scale,
                                  "unit_norm": False}


def _tanh_field(rng, d, beta, rank):
    """x -> U tanh(beta sqrt(d) V^T x + b) / sqrt(rank): a smooth field
    driven by `rank` random directions (V, U: d x rank, orthonormal
    columns; b ~ N(0, 0.25)). On unit-norm x the pre-activations have
    standard deviation ~ beta, so beta ~ 1-2 bends well into tanh's curve;
    the output has norm <= 1. A one-hidden-layer network can represent it;
    an affine map cannot."""
    v = np.linalg.qr(rng.standard_normal((d, rank)))[0]
    u = np.linalg.qr(rng.standard_normal((d, rank)))[0]
    b = rng.standard_normal(rank) * 0.5
    gain = beta * np.sqrt(d)
    return lambda x: np.tanh(gain * (x @ v) + b) @ u.T / np.sqrt(rank)


def drift_nonlinear(s, seed, c=0.8, beta=1.5, rank=16):
    """g = normalize(s + c U tanh(beta sqrt(d) V^T s + b) / sqrt(rank)),
    see _tanh_field."""
    rng = np.random.default_rng(seed)
    d = s.shape[1]
    field = _tanh_field(rng, d, beta, rank)
    s64 = s.astype(np.float64)
    g = _normalize(s64 + c * field(s64))
    return g.astype(np.float32), {
        "family": "g = normalize(s + c U tanh(beta sqrt(d) V^T s + b) / sqrt(r))",
        "c": c, "beta": beta, "rank": rank, "unit_norm": True}


def _regional_field(rng, s, regions, c, tau):
    """x -> sum_j softmax_j(tau <a_j, x>) t_j: each of `regions` regions
    of the data (anchors a_j: random stale points, so regions follow the
    clusters) moves along its own random direction t_j (norm c), blended
    smoothly across region borders. Like a fine-tuned encoder moving
    topics differently; an affine map can follow at most d of them."""
    n, d = s.shape
    anchors = s[rng.choice(n, regions, replace=False)].astype(np.float64)
    t = rng.standard_normal((regions, d))
    t *= c / np.linalg.norm(t, axis=1, keepdims=True)

    def field(x, chunk=8192):
        out = np.empty((len(x), d))
        for a in range(0, len(x), chunk):
            z = tau * (x[a:a + chunk] @ anchors.T)
            z -= z.max(1, keepdims=True)
            w = np.exp(z)
            w /= w.sum(1, keepdims=True)
            out[a:a + chunk] = w @ t
        return out
    return field


def drift_regional(s, seed, c=1.2, tau=8.0, regions=64):
    """g = normalize(s + sum_j softmax_j(tau <a_j, s>) t_j), see
    _regional_field: a nonlinear drift a small network can learn."""
    rng = np.random.default_rng(seed)
    field = _regional_field(rng, s, regions, c, tau)
    s64 = s.astype(np.float64)
    g = _normalize(s64 + field(s64))
    return g.astype(np.float32), {
        "family": "g = normalize(s + sum_j softmax_j(tau <a_j, s>) t_j)",
        "c": c, "tau": tau, "regions": regions, "unit_norm": True}


def drift_growing(s, seed, t, c=0.6, tau=8.0, regions=64, angle=0.5):
    """Growing staleness: g_t = normalize(exp(t K) s + t F(s)) with K
    skew-symmetric (a rotation growing with t) and F the regional field
    (norm c). The same K, F for every t (one seed): the same drift family
    observed after longer and longer training."""
    rng = np.random.default_rng(seed)
    d = s.shape[1]
    m = rng.standard_normal((d, d)) * (angle / np.sqrt(d))
    k = (m - m.T) / np.sqrt(2.0)
    field = _regional_field(rng, s, regions, c, tau)
    r = _expm_skew(t * k)
    s64 = s.astype(np.float64)
    g = _normalize(s64 @ r.T + t * field(s64))
    return g.astype(np.float32), {
        "family": "g = normalize(exp(tK) s + t sum_j softmax_j(tau <a_j, s>) t_j)",
        "t": t, "c": c, "tau": tau, "regions": regions, "angle": angle,
        "unit_norm": True}


# --------------------------------------------------------------------------
# Real drift: fasttext on Debian package text
# --------------------------------------------------------------------------

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_JUNK = re.compile(r"[0-9@]|://|^www\.")
_TROFF_ESC = [
    (re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)"), ""),   # font changes
    (re.compile(r"\\\*(?:\[[^\]]*\]|\(..|.)"), " "),  # strings
    (re.compile(r"\\\[[^\]]*\]"), " "),              # named glyphs
    (re.compile(r"\\\(.."), " "),                    # two-char glyphs
    (re.compile(r"\\[sv]['\[(]?[-+]?\d*['\])]?"), ""),  # size, vertical
    (re.compile(r"\\[a-zA-Z]'[^']*'"), " "),         # \w'..' \h'..' etc
    (re.compile(r"\\."), " "),                       # any other escape
]

# The corpus' recipe: bump when the text extraction changes, so a cache
# built by an older recipe is rebuilt, not reused.
CORPUS_RECIPE = 2


def _man_text(raw):
    out = []
    for line in raw.splitlines():
        if line.startswith(".\\\"") or line.startswith("'\\\"") or line.startswith('.\\"'):
            continue
        if line.startswith(".") or line.startswith("'"):
            parts = line.split(None, 1)
            macro = parts[0][1:]
            # keep the text of formatting macros, drop control requests
            if macro in ("SH", "SS", "B", "I", "BI", "IB", "BR", "RB", "IR",
                         "RI", "SM", "SB", "TP", "IP", "Nm", "Nd", "Sh",
                         "Ss", "Dl", "It", "Fl", "Ar", "Op", "Pa", "Em"):
                line = parts[1] if len(parts) > 1 else ""
            else:
                line = ""
        for pat, rep in _TROFF_ESC:
            line = pat.sub(rep, line)
        line = line.replace('"', " ")
        out.append(line)
    return "\n".join(out)


def _words(block):
    """Lowercase words of a text block. Whitespace-separated tokens holding
    a digit, '@' or '://' (hashes, versions, addresses, URLs) are dropped
    whole, so they do not leave letter fragments behind."""
    out = []
    for tok in block.lower().split():
        if _JUNK.search(tok):
            continue
        out.extend(_WORD.findall(tok))
    return out


def _paragraphs(text):
    """Blocks separated by blank lines, each as one line of lowercase
    words (fasttext reads one sentence a line)."""
    for block in re.split(r"\n\s*\n", text):
        words = _words(block)
        if len(words) >= 4:
            yield " ".join(words)


def _read_gz_or_plain(path):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read(4 << 20)
        else:
            with open(path, "rb") as f:
                data = f.read(4 << 20)
    except (OSError, EOFError, gzip.BadGzipFile):
        return ""
    if b"\0" in data[:4096]:
        return ""  # binary
    return data.decode("utf-8", "replace")


def _corpus_sources():
    """(kind, path) of every text source, in a fixed order."""
    src = []
    for p in sorted(glob.glob("/usr/share/man/man[1-9]*/*")):
        if os.path.isfile(p) and not os.path.islink(p):
            src.append(("man", p))
    doc = []
    for root, _dirs, files in os.walk("/usr/share/doc"):
        for f in files:
            p = os.path.join(root, f)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            low = f.lower()
            if (low.startswith("changelog") or low == "copyright" or
                    low.startswith("news") or low.startswith("readme") or
                    low.endswith((".txt", ".txt.gz", ".md", ".md.gz",
                                  ".rst", ".rst.gz"))):
                doc.append(p)
    src += [("doc", p) for p in sorted(doc)]
    for p in sorted(glob.glob("/var/lib/apt/lists/*Packages*")):
        src.append(("packages", p))
    return src


def _packages_text(path):
    if path.endswith(".lz4"):
        cmd = ["lz4", "-dc", path]
    elif path.endswith(".gz"):
        cmd = ["gzip", "-dc", path]
    elif path.endswith(".xz"):
        cmd = ["xz", "-dc", path]
    else:
        cmd = ["cat", path]
    try:
        data = subprocess.run(cmd, check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    lines = []
    desc = False
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith("Description:"):
            desc = True
            lines.append(line[len("Description:"):])
        elif desc and line.startswith(" "):
            lines.append(line)
        else:
            if desc:
                lines.append("")
            desc = False
    return "\n".join(lines)


def build_corpus(path, max_mb=48, log=print):
    """Writes the corpus to path (one paragraph a line, lowercase words);
    paragraphs repeated verbatim across packages (licence texts) are kept
    once. When the text exceeds max_mb, a fixed hash-chosen share of the
    paragraphs is kept (so every source stays represented and the choice
    does not depend on file order). Returns a dict describing it."""
    t0 = time.time()
    seen = set()
    counts = {"man": 0, "doc": 0, "packages": 0}
    paras = []
    total = 0
    for kind, p in _corpus_sources():
        if kind == "packages":
            text = _packages_text(p)
        else:
            text = _read_gz_or_plain(p)
            if kind == "man":
                text = _man_text(text)
        if not text:
            continue
        counts[kind] += 1
        for para in _paragraphs(text):
            h = hashlib.blake2b(para.encode(), digest_size=8).digest()
            if h in seen:
                continue
            seen.add(h)
            paras.append((int.from_bytes(h, "little"), para))
            total += len(para) + 1
    frac = min(1.0, max_mb * 1e6 / max(total, 1))
    cut = int(frac * 2 ** 64)
    nbytes = nwords = kept = 0
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as out:
        for h, para in paras:
            if h >= cut:
                continue
            out.write(para)
            out.write("\n")
            kept += 1
            nbytes += len(para) + 1
            nwords += para.count(" ") + 1
    os.replace(tmp, path)
    info = {"bytes": nbytes, "words": nwords, "paragraphs": kept,
            "unique_text_bytes": total, "kept_share": round(frac, 4),
            "files": counts, "seconds": round(time.time() - t0, 1),
            "recipe": CORPUS_RECIPE}
    log("corpus: %.1f MB (%.0f%% of %.1f MB of unique paragraphs), %d words, "
        "%d paragraphs from %s (%.0f s)" % (
            nbytes / 1e6, 100 * frac, total / 1e6, nwords, kept, counts,
            time.time() - t0))
    return info


# Word-level skipgram (no character n-grams: -maxn 0), which is 4-5x
# faster on one thread; one thread and a seed make the models reproducible.
FASTTEXT_ARGS = ["-dim", "100", "-minCount", "10", "-ws", "5", "-neg", "5",
                 "-minn", "0", "-maxn", "0", "-thread", "1", "-seed", "1",
                 "-verbose", "1"]


def _train_fasttext(corpus, prefix, epochs, log):
    cmd = ["fasttext", "skipgram", "-input", corpus, "-output", prefix,
           "-epoch", str(epochs)] + FASTTEXT_ARGS
    log("training: " + " ".join(cmd))
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    return proc, t0, cmd


def _load_vec(path):
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        n, d = (int(x) for x in f.readline().split())
        words = []
        vecs = np.empty((n, d), dtype=np.float32)
        i = 0
        for line in f:
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if len(parts) != d + 1:
                continue
            words.append(parts[0])
            vecs[i] = np.asarray(parts[1:], dtype=np.float32)
            i += 1
    return words, vecs[:i]


def fasttext_pair(cache_dir, stale_epochs=3, fresh_epochs=10, max_mb=48,
                  log=print):
    """Returns (words, stale, fresh, info): the vocabulary (by descending
    frequency) and both models' word vectors, unit-normalized, training
    both models on the cached corpus if they are not cached yet."""
    os.makedirs(cache_dir, exist_ok=True)
    corpus = os.path.join(cache_dir, "corpus.txt")
    meta_path = os.path.join(cache_dir, "corpus.json")
    meta = None
    if os.path.exists(corpus) and os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("recipe") != CORPUS_RECIPE or meta.get("max_mb") != max_mb:
            meta = None
    if meta is None:
        log("building the corpus in %s (once; cached)" % corpus)
        meta = build_corpus(corpus, max_mb=max_mb, log=log)
        meta["max_mb"] = max_mb
        with open(meta_path, "w") as f:
            json.dump(meta, f)
        for stale in glob.glob(os.path.join(cache_dir, "ft-*")):
            os.remove(stale)  # models of an older corpus
    tag = hashlib.blake2b(" ".join(FASTTEXT_ARGS).encode(),
                          digest_size=4).hexdigest()
    prefixes = {e: os.path.join(cache_dir, "ft-%s-e%d" % (tag, e))
                for e in (stale_epochs, fresh_epochs)}
    # train the missing models side by side (one thread each: reproducible)
    running = []
    for e, prefix in prefixes.items():
        if not os.path.exists(prefix + ".vec"):
            running.append((e, prefix) + _train_fasttext(corpus, prefix + ".part", e, log))
    for e, prefix, proc, t0, cmd in running:
        _out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError("fasttext failed (%d): %s\n%s" % (
                proc.returncode, " ".join(cmd), err.decode(errors="replace")[-2000:]))
        os.replace(prefix + ".part.vec", prefix + ".vec")
        try:
            os.remove(prefix + ".part.bin")  # the .bin is large; the .vec is all we use
        except OSError:
            pass
        log("fasttext %d epochs: %.0f s" % (e, time.time() - t0))
    w_s, v_s = _load_vec(prefixes[stale_epochs] + ".vec")
    w_f, v_f = _load_vec(prefixes[fresh_epochs] + ".vec")
    pos = {w: i for i, w in enumerate(w_f)}
    keep = [(i, pos[w]) for i, w in enumerate(w_s) if w in pos and w != "</s>"]
    si = np.array([a for a, _ in keep])
    fi = np.array([b for _, b in keep])
    words = [w_s[i] for i in si]
    stale = _normalize(v_s[si].astype(np.float64)).astype(np.float32)
    fresh = _normalize(v_f[fi].astype(np.float64)).astype(np.float32)
    info = {"corpus": meta, "fasttext": "skipgram " + " ".join(FASTTEXT_ARGS),
            "stale_epochs": stale_epochs, "fresh_epochs": fresh_epochs,
            "vocabulary": len(words)}
    return words, stale, fresh, info


if __name__ == "__main__":  # build the cache by hand: drift_data.py [DIR]
    d = sys.argv[1] if len(sys.argv) > 1 else "/tmp/freshd-drift-cache"
    w, s, f, info = fasttext_pair(d)
    print(json.dumps(info, indent=1))
