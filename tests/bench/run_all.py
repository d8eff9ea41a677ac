"""Runs every performance benchmark and prints one table: figure, freshd,
peer or bound, ratio, target, pass/fail. Run by hand on a quiet machine
(medians of several runs are taken inside each benchmark):

    /usr/bin/python3 tests/bench/run_all.py            # full sizes (~30 min)
    /usr/bin/python3 tests/bench/run_all.py --toy      # seconds: a smoke test

The correction-quality benchmark is separate: tests/bench/drift.py.
"""

import argparse
import os
import sys
import time
import traceback

import benchlib  # noqa: F401 - puts clients/python on the path for the suites

SUITES = ["bench_engine", "bench_http", "bench_sample", "bench_refit", "bench_ingest",
          "bench_start", "bench_store", "bench_shards"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true", help="tiny sizes: checks the benchmarks run")
    ap.add_argument("--only", help="comma-separated subset of " + ",".join(SUITES))
    ap.add_argument("--build", help="build directory (default: build)")
    a = ap.parse_args()
    if a.build:
        os.environ["FRESHD_BUILD"] = os.path.abspath(a.build)
    suites = a.only.split(",") if a.only else SUITES
    rows, failed = [], []
    for name in suites:
        t = time.time()
        try:
            mod = __import__(name)
            rows += mod.run(a.toy)
        except Exception:  # report and carry on with the others
            traceback.print_exc()
            failed.append(name)
        sys.stderr.write("%s: %.0f s\n" % (name, time.time() - t))
    print("| figure | freshd | peer or bound | ratio | target | pass |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        verdict = "" if r[5] == "" else ("pass" if r[5] else "FAIL")
        print("| %s | %s | %s | %s | %s | %s |" % (r[0], r[1], r[2], r[3], r[4], verdict))
    if failed:
        print("benchmarks that did not run: " + ", ".join(failed))
    # At toy sizes the figures mean nothing; only running to the end counts.
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
