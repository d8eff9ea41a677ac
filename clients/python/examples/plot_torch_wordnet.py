#!/usr/bin/python3
"""Plots of a torch_wordnet.py run (its --out directory):

    /usr/bin/python3 clients/python/examples/plot_torch_wordnet.py DIR [MORE_DIR ...]

reads DIR/results.json and those of the MORE_DIRs (other methods run with
the same settings, e.g. the writeback probes) and writes DIR/accuracy-vs-embeddings.png (held-out R@10 and R@1 against the
corpus embeddings each method used, mean over seeds with the seeds' range)
DIR/accuracy-over-steps.png (held-out R@10 during training, mean over
seeds) and, when the runs measured it, DIR/overlap-over-steps.png (how
much of the fresh top-10 each method's index finds during training).
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"zeroshot": "0.6", "inbatch": "tab:gray", "stale": "tab:red", "freshd": "tab:green",
          "freshd-rows": "darkgreen", "freshd-aged": "lime", "freshd-delta": "tab:pink",
          "writeback-projected": "gold", "writeback-aged": "tab:purple",
          "writeback-aged-every-5": "tab:purple",
          "writeback": "tab:orange", "freshd-writeback": "tab:olive", "oracle": "black",
          "periodic-50": "tab:blue", "periodic-100": "tab:purple", "periodic-150": "tab:cyan",
          "periodic-300": "tab:brown", "periodic-1": "0.35"}


def over_steps(results, methods, key, scale, ylabel, path):
    """key of the runs' curves against the training step, mean over the
    runs of a method at each step they share; nothing when no curve has it."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    drawn = False
    for m in methods:
        at = {}
        for r in results:
            if r["method"] == m:
                for p in r.get("curve") or []:
                    if p.get(key) is not None:
                        at.setdefault(p["step"], []).append(scale * p[key])
        if not at:
            continue
        steps = sorted(at)
        ax.plot(steps, [np.mean(at[s]) for s in steps], marker=".", label=m,
                color=COLORS.get(m, "tab:pink"), ls="--" if "-every-" in m else "-")
        drawn = True
    if drawn:
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    plt.close(fig)


def main(out, *more):
    results = []
    for d in (out,) + more:
        with open(os.path.join(d, "results.json")) as f:
            run = json.load(f)
        args = run.get("args") or {}
        if isinstance(args, list):  # merged runs: one args each (refit_every alike)
            args = args[0]
        every = args.get("refit_every", 25)
        for r in run["results"]:
            # Runs of a method that refits (freshd's corrector, the aged
            # rows' maps) at another interval are drawn apart.
            refits = r["method"].startswith("freshd") or r["method"] == "writeback-aged"
            if every != 25 and refits:
                r = dict(r, method="%s-every-%d" % (r["method"], every))
            results.append(r)
    methods = []
    for r in results:
        if r["method"] not in methods:
            methods.append(r["method"])
    allm = {k: [100 * np.mean([r[k] for r in results if r["method"] == m]) for m in methods]
            for k in ("r10", "r1")}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, key, label in ((axes[0], "r10", "R@10"), (axes[1], "r1", "R@1")):
        px, py, at_x = [], [], {}
        for m in methods:
            rs = [r for r in results if r["method"] == m]
            x = np.mean([r["corpus_passes"] for r in rs])
            y = np.array([100 * r[key] for r in rs])
            color = COLORS.get(m, "tab:blue")
            ax.errorbar([x], [y.mean()], yerr=[[y.mean() - y.min()], [y.max() - y.mean()]],
                        fmt="o", color=color, capsize=3)
            at_x.setdefault(round(float(np.log10(x)), 1), []).append((float(y.mean()), m, color, x))
            if m.startswith("periodic-"):
                px.append(x)
                py.append(y.mean())
        # Labels of the points that share an x go in a column beside them,
        # in the points' order, each with a line to its point.
        span = np.ptp(allm[key]) or 1.0
        for pts in at_x.values():
            pts.sort(reverse=True)
            x = pts[0][3]
            left = x > 100  # the right edge: labels on the left
            gap = 0.075 * span
            ys = [p[0] for p in pts]
            lab = [ys[0]]
            for v in ys[1:]:
                lab.append(min(v, lab[-1] - gap))
            shift = (np.mean(ys) - np.mean(lab)) if len(pts) > 1 else 0.0
            for (v, m, color, px_), ly in zip(pts, lab):
                f = 2.2 if len(pts) > 1 else 1.15
                ax.annotate(m, (px_, v), xytext=(x / f if left else x * f, ly + shift),
                            textcoords="data", fontsize=8, va="center", color="0.1",
                            ha="right" if left else "left",
                            arrowprops=dict(arrowstyle="-", color=color, lw=0.8)
                            if len(pts) > 1 else None)
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

    over_steps(results, methods, "r10", 100, "held-out R@10 (%)",
               os.path.join(out, "accuracy-over-steps.png"))
    over_steps(results, methods, "fresh_top10_overlap", 100,
               "fresh top-10 its index finds (%)", os.path.join(out, "overlap-over-steps.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
