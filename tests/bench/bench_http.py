"""Server, concurrent: many clients each sending single-query searches
over HTTP, against one client sending the same queries one after another,
and against the engine's own throughput at the batch size the server's
dispatcher formed. The load generator is wrk (Debian's package).

    /usr/bin/python3 tests/bench/bench_http.py [--toy] [--seconds S]
"""

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile


import benchlib


def wrk(url, connections, threads, seconds, body):
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                 'wrk.body = %s\n' % json.dumps(body))
    script.close()
    try:
        out = subprocess.run(["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds,
                              "--latency", "-s", script.name, url + "/v1/search"],
                             check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)

    def pct(p):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)" % p, out, re.M)
        v = float(m.group(1))
        return v / 1e6 if m.group(2) == "us" else v / 1e3 if m.group(2) == "ms" else v

    return {"rps": rps, "p50": pct(50), "p99": pct(99),
            "non2xx": int(bad.group(1)) if bad else 0, "socket_errors": errors.group(1) if errors else ""}


def search_body(d):
    q = benchlib.queries(1, d, seed=9)[0]
    return json.dumps({"vector_b64": base64.b64encode(q.astype("<f4").tobytes()).decode(), "k": 10})


def engine_qps(path, b, reps=5):
    out = subprocess.run([benchlib.binary("bench_engine"), "--index", path, "--b", str(b),
                          "--k", "10", "--reps", str(reps)], check=True, capture_output=True,
                         text=True).stdout
    rec = [json.loads(l) for l in out.splitlines() if '"topk"' in l][0]
    return b / rec["seconds"]


def run(toy=False, seconds=None):
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: bash .ci/setup installs it")
    n, d = (20000, 64) if toy else (200000, 768)
    seconds = seconds or (2 if toy else 10)
    path = benchlib.dataset(n, d)
    body = search_body(d)
    rows = []
    with benchlib.Freshd("--index", path, "--corrector", "affine", "--refit-every-pairs", "0",
                         "--refit-every-seconds", "0") as f:
        wrk(f.url, 4, 1, 1, body)  # warm up
        one = wrk(f.url, 1, 1, seconds, body)
        q0, b0 = f.metric("freshd_search_batch_size_sum"), f.metric("freshd_search_batch_size_count")
        many = wrk(f.url, 64, 2, seconds, body)
        q1, b1 = f.metric("freshd_search_batch_size_sum"), f.metric("freshd_search_batch_size_count")
    batch = (q1 - q0) / max(b1 - b0, 1)
    eng = engine_qps(path, max(1, int(round(batch))))
    ok = one["non2xx"] == 0 and many["non2xx"] == 0 and not many["socket_errors"]
    rows.append(("HTTP N=%d d=%d: 1 client, sequential" % (n, d), "%.0f q/s" % one["rps"],
                 "p50 %.1f ms, p99 %.1f ms" % (one["p50"] * 1e3, one["p99"] * 1e3), "", "", ok))
    rows.append(("HTTP: 64 concurrent clients vs 1 client", "%.0f q/s" % many["rps"],
                 "%.0f q/s" % one["rps"], "%.1fx" % (many["rps"] / one["rps"]), ">= 8x",
                 many["rps"] / one["rps"] >= 8 and ok))
    rows.append(("HTTP: 64 clients, latency", "p50 %.1f ms" % (many["p50"] * 1e3),
                 "p99 %.1f ms" % (many["p99"] * 1e3), "", "", ok))
    rows.append(("HTTP: 64 clients vs engine at the formed batch (B=%.1f)" % batch,
                 "%.0f q/s" % many["rps"], "%.0f q/s" % eng, "%.2f" % (many["rps"] / eng),
                 ">= 0.60", many["rps"] / eng >= 0.6))
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true")
    ap.add_argument("--seconds", type=int)
    a = ap.parse_args()
    for row in run(a.toy, a.seconds):
        print(" | ".join(str(c) for c in row))
