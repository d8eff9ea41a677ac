#!/usr/bin/python3
"""Plots of a torch_wordnet.py run (its --out directory):

    /usr/bin/python3 clients/python/examples/plot_torch_wordnet.py DIR [MORE_DIR ...]

reads DIR/results.json and those of the MORE_DIRs (other methods run with
the same settings, e.g. the writeback probes) and writes DIR/accuracy-vs-embeddings.png (held-out R@10 and R@1 against the
corpus embeddings each method used, mean over seeds with the seeds' range)
and DIR/accuracy-over-steps.png (held-out R@10 during training, mean over
seeds).
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"zeroshot": "0.6", "inbatch": "tab:gray", "stale": "tab:red", "freshd": "tab:green",
          "freshd-rows": "darkgreen",
          "writeback": "tab:orange", "freshd-writeback": "tab:olive", "oracle": "black",
          "periodic-50": "tab:blue", "periodic-100": "tab:purple", "periodic-150": "tab:cyan",
          "periodic-300": "tab:brown"}


def main(out, *more):
    results = []
    for d in (out,) + more:
        with open(os.path.join(d, "results.json")) as f:
            results += json.load(f)["results"]
    methods = []
    for r in results:
        if r["method"] not in methods:
            methods.append(r["method"])
    allm = {k: [100 * np.mean([r[k] for r in results if r["method"] == m]) for m in methods]
            for k in ("r10", "r1")}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "r10", "R@10"), (axes[1], "r1", "R@1")):
        px, py, placed = [], [], {}
        for m in methods:
            rs = [r for r in results if r["method"] == m]
            x = np.mean([r["corpus_passes"] for r in rs])
            y = np.array([100 * r[key] for r in rs])
            color = COLORS.get(m, "tab:blue")
            ax.errorbar([x], [y.mean()], yerr=[[y.mean() - y.min()], [y.max() - y.mean()]],
                        fmt="o", color=color, capsize=3)
            # Labels of points at the same x go one under the other.
            below = placed.setdefault(round(float(x), 3), [])
            near = sum(1 for v in below if abs(v - y.mean()) < 0.3 * np.ptp(allm[key]) / 4)
            below.append(y.mean())
            ax.annotate(m, (x, y.mean()), textcoords="offset points",
                        xytext=(6, 4 - 10 * near), fontsize=8)
            if m.startswith("periodic-"):
                px.append(x)
                py.append(y.mean())
        if px:
            order = np.argsort(px)
            ax.plot(np.array(px)[order], np.array(py)[order], "--", color="0.5", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("corpus embeddings (multiples of N, log scale)")
        ax.set_ylabel("held-out %s (%%)" % label)
        ax.grid(alpha=0.3)
    fig.suptitle("WordNet lemma -> definition, %d seeds: accuracy vs corpus re-embedding"
                 % len({r["seed"] for r in results}))
    fig.tight_layout()
    fig.savefig(os.path.join(out, "accuracy-vs-embeddings.png"), dpi=110)

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for m in methods:
        rs = [r for r in results if r["method"] == m and r.get("curve")]
        if not rs:
            continue
        steps = [p["step"] for p in rs[0]["curve"]]
        y = np.mean([[100 * p["r10"] for p in r["curve"]] for r in rs], axis=0)
        ax.plot(steps, y, marker=".", label=m, color=COLORS.get(m, "tab:pink"))
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out R@10 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "accuracy-over-steps.png"), dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
