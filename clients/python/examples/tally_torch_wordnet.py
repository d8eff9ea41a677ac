#!/usr/bin/python3
"""Per-seed means of every torch_wordnet.py run found under some directories:

    /usr/bin/python3 clients/python/examples/tally_torch_wordnet.py [--as NAME=METHOD,...] DIR [DIR ...]

reads every results.json below the DIRs (runs of 600 steps with the
default loss; a run whose daemon got --freshd-flags is its method with
the flags appended, e.g. "freshd-rows --age-fresh-rows", and so is one
with settings other than the defaults), and prints, per
method, how many runs each seed has and the mean R@10 and R@1 of each
seed's runs, then the mean over seeds. --as pools methods under one name
(e.g. "fresh every step=oracle,periodic-1", two ways of drawing fresh
negatives every step). A run repeated with the same draws counts as one
more run: pass only the directories you mean to pool.
"""

import argparse
import glob
import json
import os
import sys
from collections import defaultdict

# Settings that make a run another variant when not these (torch_wordnet.py's defaults).
DEFAULTS = dict(refit_every=25, rows_every=1, max_step_lag=0, with_queries=False,
                logit_weight=None, table_lr=None, tower_hidden=0, corrector="mlp",
                towers="shared", lr=1e-2, temperature=0.05, tau=0.05, negatives=16,
                batch=128, dim=64)


def runs(dirs):
    for top in dirs:
        for path in sorted(glob.glob(os.path.join(top, "**", "results.json"), recursive=True)):
            with open(path) as f:
                doc = json.load(f)
            if isinstance(doc, list):
                doc = {"results": doc}
            args = doc.get("args") if isinstance(doc.get("args"), dict) else {}
            if args.get("steps", 600) != 600 or args.get("loss", "own") != "own":
                continue
            label = [args.get("freshd_flags", "")] + [
                "--%s %s" % (k.replace("_", "-"), args[k]) for k in sorted(DEFAULTS)
                if k in args and args[k] != DEFAULTS[k] and args[k] not in (False, None)]
            for r in doc["results"]:
                if r.get("steps") == 0:
                    continue
                yield dict(r, method=" ".join([r["method"]] + [x for x in label if x]), path=path)


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--as", dest="pools", default="",
                    help="NAME=METHOD,METHOD;NAME=... : pool methods under NAME")
    ap.add_argument("dirs", nargs="+")
    a = ap.parse_args(argv)
    alias = {}
    for spec in filter(None, a.pools.split(";")):
        name, methods = spec.split("=", 1)
        for m in methods.split(","):
            alias[m.strip()] = name.strip()
    by = defaultdict(lambda: defaultdict(list))
    for r in runs(a.dirs):
        by[alias.get(r["method"], r["method"])][r["seed"]].append(r)
    seeds = sorted({s for m in by.values() for s in m})
    print("| method | runs, seeds %s | R@10, seeds %s | R@10 mean | R@1 mean |" % (
        " / ".join(map(str, seeds)), " / ".join(map(str, seeds))))
    print("| --- | --- | --- | --- | --- |")
    for m in sorted(by):
        per = [by[m].get(s, []) for s in seeds]
        r10 = [100 * sum(r["r10"] for r in rs) / len(rs) if rs else None for rs in per]
        r1 = [100 * sum(r["r1"] for r in rs) / len(rs) if rs else None for rs in per]
        have = [x for x in r10 if x is not None]
        have1 = [x for x in r1 if x is not None]
        print("| %s | %s | %s | %.2f | %.2f |" % (
            m, " / ".join(str(len(rs)) for rs in per),
            " / ".join("-" if x is None else "%.2f" % x for x in r10),
            sum(have) / len(have), sum(have1) / len(have1)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
