#!/usr/bin/env bash
# Offline check of the Kubernetes manifests in server/deploy/kubernetes.
#
#   bash tests/deploy/check_kubernetes.sh [path/to/freshd]
#
# No cluster is needed or contacted: kubectl gets a throwaway kubeconfig
# whose server is a closed loopback port (https://127.0.0.1:1), so neither
# the operator's kubeconfig nor kubectl's default (localhost:8080, freshd's
# own port) is ever used.
#
#  1. `kubectl kustomize` renders the directory (fails on bad YAML, a
#     missing resource or generator file).
#  2. kubectl decodes every rendered object (`kubectl label --local`), and
#     the workloads and Services into their typed API structs
#     (`kubectl set image/selector --local`): fails on a wrong field type
#     or a workload without a container named freshd.
#  3. python3 (standard library only) checks that the pieces fit: selectors
#     and labels, Service ports, probes on /readyz and /healthz at the
#     container's port, volumes, the key Secret, security settings, the
#     StatefulSet against its headless Service, and the coordinator's
#     --shards list against the StatefulSet's replicas and names.
#  4. With a freshd binary: every flag used (in args, or as a FRESHD_*
#     variable) is one that `freshd --help` lists, and each container's
#     whole command line parses (its args followed by --help exit 0).
#
# KUBECTL names another kubectl; FRESHD_K8S_DIR another manifest directory.
# Prints "kubernetes manifests: ok" and exits 0, or says what is wrong and
# exits 1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="${FRESHD_K8S_DIR:-$root/server/deploy/kubernetes}"
freshd="${1:-}"
kubectl="${KUBECTL:-kubectl}"
python=/usr/bin/python3
[ -x "$python" ] || python=python3

fail() {
	echo "check_kubernetes: $*" >&2
	exit 1
}

command -v "$kubectl" >/dev/null ||
	fail "kubectl not found (Debian: apt-get install kubernetes-client)"
command -v "$python" >/dev/null || fail "python3 not found"
[ -f "$dir/kustomization.yaml" ] || fail "$dir/kustomization.yaml: no such file"
if [ -n "$freshd" ]; then
	[ -x "$freshd" ] || fail "$freshd: not an executable"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# A token user too: without credentials some kubectl versions prompt for a
# user name even with --local.
cat >"$tmp/kubeconfig" <<'EOF'
apiVersion: v1
kind: Config
clusters:
  - name: offline
    cluster:
      server: https://127.0.0.1:1
contexts:
  - name: offline
    context:
      cluster: offline
      user: offline
current-context: offline
users:
  - name: offline
    user:
      token: offline
EOF
export KUBECONFIG="$tmp/kubeconfig"

# 1. Render.
if ! "$kubectl" kustomize "$dir" >"$tmp/rendered.yaml" 2>"$tmp/kustomize.err"; then
	cat "$tmp/kustomize.err" >&2
	fail "kubectl kustomize $dir failed"
fi
[ -s "$tmp/rendered.yaml" ] || fail "kubectl kustomize $dir rendered nothing"

# 2. Decode every object; then the typed decode of workloads and Services.
if ! "$kubectl" label --local -f "$tmp/rendered.yaml" -o json \
	freshd-check=offline </dev/null >"$tmp/objects.json" 2>"$tmp/decode.err"; then
	cat "$tmp/decode.err" >&2
	fail "kubectl could not decode the rendered manifests"
fi

"$python" - "$tmp/objects.json" "$tmp" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
dec, objs, i = json.JSONDecoder(), [], 0
while True:
    i = re.compile(r"\s*").match(text, i).end()
    if i >= len(text):
        break
    o, i = dec.raw_decode(text, i)
    objs += o.get("items", []) if o.get("kind") == "List" else [o]
def dump(kinds, name):
    items = [o for o in objs if o.get("kind") in kinds]
    with open(sys.argv[2] + "/" + name, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)
dump({"Deployment", "StatefulSet"}, "workloads.json")
dump({"Service"}, "services.json")
json.dump(objs, open(sys.argv[2] + "/all.json", "w"))
PY

if ! "$kubectl" set image --local -f "$tmp/workloads.json" -o name \
	freshd=freshd:check </dev/null >/dev/null 2>"$tmp/typed.err"; then
	cat "$tmp/typed.err" >&2
	fail "a Deployment or StatefulSet does not decode (or has no container named freshd)"
fi
if ! "$kubectl" set selector --local -f "$tmp/services.json" -o name \
	freshd-check=offline </dev/null >/dev/null 2>"$tmp/typed.err"; then
	cat "$tmp/typed.err" >&2
	fail "a Service does not decode"
fi

# 3 and 4. How the pieces fit; the flags against the binary when given.
helpfile=""
if [ -n "$freshd" ]; then
	helpfile="$tmp/help.txt"
	"$freshd" --help >"$helpfile" 2>&1 || fail "$freshd --help failed"
fi

"$python" - "$tmp/all.json" "$freshd" "$helpfile" <<'PY'
import json, math, os, re, subprocess, sys
from urllib.parse import urlsplit

objs = json.load(open(sys.argv[1]))
freshd, helpfile = sys.argv[2], sys.argv[3]
errors = []


def err(msg):
    errors.append(msg)


def name(o):
    return "%s/%s" % (o.get("kind"), o.get("metadata", {}).get("name"))


def g(o, *path, default=None):
    for p in path:
        if isinstance(o, dict) and p in o:
            o = o[p]
        elif isinstance(o, list) and isinstance(p, int) and p < len(o):
            o = o[p]
        else:
            return default
    return o


def subset(sel, labels):
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


def cpu_cores(q):
    q = str(q)
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


def flags_of(c):
    """freshd's arguments in container c (after the binary, if command names it)."""
    return list(c.get("command", [])[1:]) + list(c.get("args", []))


def arg_value(argv, flag):
    for k, a in enumerate(argv):
        if a == flag:
            return argv[k + 1] if k + 1 < len(argv) else ""
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
    return None


def has_flag(argv, flag):
    return any(a == flag or a.startswith(flag + "=") for a in argv)


for o in objs:
    for f in ("apiVersion", "kind"):
        if not o.get(f):
            err("an object has no %s" % f)
    if not g(o, "metadata", "name"):
        err("a %s has no metadata.name" % o.get("kind"))
    if g(o, "metadata", "namespace"):
        err("%s sets a namespace: the base must be namespace-agnostic" % name(o))
    if g(o, "metadata", "labels", "app.kubernetes.io/name") != "freshd":
        err("%s lacks the label app.kubernetes.io/name: freshd" % name(o))

kinds = {}
for o in objs:
    kinds.setdefault(o.get("kind"), []).append(o)
workloads = kinds.get("Deployment", []) + kinds.get("StatefulSet", [])
services = kinds.get("Service", [])
secrets = {g(o, "metadata", "name"): o for o in kinds.get("Secret", [])}


def pod_labels(w):
    return g(w, "spec", "template", "metadata", "labels", default={}) or {}


def freshd_container(w):
    for c in g(w, "spec", "template", "spec", "containers", default=[]) or []:
        if c.get("name") == "freshd":
            return c
    return None


def container_port(c, ref):
    """The containerPort that ref (a number or a port name) designates."""
    for p in c.get("ports", []) or []:
        if ref == p.get("name") or ref == p.get("containerPort"):
            return p.get("containerPort")
    return None


# --- every workload ------------------------------------------------------
for w in workloads:
    n, spec = name(w), w.get("spec", {})
    pod = g(spec, "template", "spec", default={}) or {}
    sel = g(spec, "selector", "matchLabels", default={}) or {}
    if not sel:
        err("%s has no spec.selector.matchLabels" % n)
    elif not subset(sel, pod_labels(w)):
        err("%s: selector %s does not match its pod labels %s" % (n, sel, pod_labels(w)))
    for other in workloads:
        if other is not w and subset(sel, pod_labels(other)):
            err("%s's selector also selects the pods of %s" % (n, name(other)))
    if pod.get("enableServiceLinks") is not False:
        err("%s: enableServiceLinks must be false (a Service named freshd "
            "would inject FRESHD_* variables, which freshd reads as flags)" % n)
    claims = {g(t, "metadata", "name"): t for t in spec.get("volumeClaimTemplates", [])}
    volumes = {v.get("name"): v for v in pod.get("volumes", []) or []}
    pod_sc = pod.get("securityContext", {}) or {}
    containers = (pod.get("initContainers", []) or []) + (pod.get("containers", []) or [])
    if not pod.get("containers"):
        err("%s has no containers" % n)
    for c in containers:
        cn = "%s container %s" % (n, c.get("name"))
        sc = c.get("securityContext", {}) or {}
        if not c.get("image"):
            err("%s has no image" % cn)
        if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
            err("%s: runAsNonRoot is not true" % cn)
        if sc.get("readOnlyRootFilesystem") is not True:
            err("%s: readOnlyRootFilesystem is not true" % cn)
        if sc.get("allowPrivilegeEscalation") is not False:
            err("%s: allowPrivilegeEscalation is not false" % cn)
        if not g(c, "resources", "requests", "memory") or not g(c, "resources", "limits", "memory"):
            err("%s: no memory request and limit" % cn)
        for m in c.get("volumeMounts", []) or []:
            if m.get("name") not in volumes and m.get("name") not in claims:
                err("%s mounts %s, which is neither a volume nor a claim" % (cn, m.get("name")))
    for v in volumes.values():
        s = g(v, "secret", "secretName")
        if v.get("secret") is not None and s not in secrets:
            err("%s: volume %s names Secret %s, which is not rendered" % (n, v.get("name"), s))

    c = freshd_container(w)
    if c is None:
        err("%s has no container named freshd" % n)
        continue
    argv = flags_of(c)
    listen = arg_value(argv, "--listen")
    if not listen or ":" not in listen:
        err("%s: freshd has no --listen HOST:PORT" % n)
        continue
    host, port = listen.rsplit(":", 1)
    port = int(port)
    if container_port(c, port) != port:
        err("%s: --listen port %d is not a containerPort" % (n, port))
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"),
                        ("startupProbe", None)):
        p = c.get(probe)
        if not p:
            err("%s: freshd has no %s" % (n, probe))
            continue
        hp = p.get("httpGet") or {}
        want = [path] if path else ["/healthz", "/readyz"]
        if hp.get("path") not in want:
            err("%s: %s path %r, expected %s" % (n, probe, hp.get("path"), " or ".join(want)))
        if container_port(c, hp.get("port")) != port:
            err("%s: %s port %r is not the port freshd listens on (%d)" % (n, probe, hp.get("port"), port))
    # A non-loopback address needs a key file, from a mounted Secret.
    keyfile = arg_value(argv, "--api-key-file")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]") and not has_flag(argv, "--insecure"):
        if not keyfile:
            err("%s: listens on %s without --api-key-file" % (n, listen))
        else:
            d, base = os.path.split(keyfile)
            mounts = [m for m in c.get("volumeMounts", []) or [] if m.get("mountPath", "").rstrip("/") == d]
            v = volumes.get(mounts[0].get("name")) if mounts else None
            s = secrets.get(g(v, "secret", "secretName")) if v else None
            if s is None:
                err("%s: --api-key-file %s is not in a mounted Secret" % (n, keyfile))
            elif base not in (s.get("data") or {}) and base not in (s.get("stringData") or {}):
                err("%s: the Secret mounted at %s has no key %r" % (n, d, base))
    w["_port"], w["_argv"] = port, argv
    w["_persistent"] = [m.get("mountPath", "").rstrip("/") for m in c.get("volumeMounts", []) or []
                        if m.get("name") in claims]

# --- Services --------------------------------------------------------------
for s in services:
    n, sel = name(s), g(s, "spec", "selector", default={}) or {}
    picked = [w for w in workloads if subset(sel, pod_labels(w))]
    if len(picked) != 1:
        err("%s selects %d workloads, expected 1" % (n, len(picked)))
        continue
    c = freshd_container(picked[0])
    for p in g(s, "spec", "ports", default=[]) or []:
        t = p.get("targetPort", p.get("port"))
        if c is None or container_port(c, t) != picked[0].get("_port"):
            err("%s: port %s targets %r, which is not freshd's port in %s"
                % (n, p.get("port"), t, name(picked[0])))
    s["_workload"] = picked[0]

# --- the shards: StatefulSet and headless Service ---------------------------
sts_list = kinds.get("StatefulSet", [])
deps = kinds.get("Deployment", [])
if len(sts_list) != 1 or len(deps) != 1:
    err("expected one StatefulSet (shards) and one Deployment (coordinator), "
        "found %d and %d" % (len(sts_list), len(deps)))
else:
    sts, dep = sts_list[0], deps[0]
    sname, spec = g(sts, "metadata", "name"), sts.get("spec", {})
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or replicas < 1:
        err("StatefulSet/%s: replicas must be a positive number" % sname)
        replicas = 0
    if spec.get("podManagementPolicy") != "Parallel":
        err("StatefulSet/%s: podManagementPolicy is not Parallel" % sname)
    svcname = spec.get("serviceName")
    hs = [s for s in services if g(s, "metadata", "name") == svcname]
    if not hs:
        err("StatefulSet/%s: serviceName %r is not a rendered Service" % (sname, svcname))
        svcport = None
    else:
        h = hs[0]
        if g(h, "spec", "clusterIP") != "None":
            err("Service/%s must be headless (clusterIP: None)" % svcname)
        if g(h, "spec", "publishNotReadyAddresses") is not True:
            err("Service/%s: publishNotReadyAddresses must be true" % svcname)
        if h.get("_workload") is not sts:
            err("Service/%s does not select the pods of StatefulSet/%s" % (svcname, sname))
        ports = [p for p in g(h, "spec", "ports", default=[]) or []
                 if container_port(freshd_container(sts) or {}, p.get("targetPort", p.get("port"))) == sts.get("_port")]
        svcport = ports[0].get("port") if ports else None
    for t in spec.get("volumeClaimTemplates", []):
        if "ReadWriteOnce" not in (g(t, "spec", "accessModes", default=[]) or []):
            err("StatefulSet/%s: claim %s is not ReadWriteOnce" % (sname, g(t, "metadata", "name")))
        if not g(t, "spec", "resources", "requests", "storage"):
            err("StatefulSet/%s: claim %s requests no storage" % (sname, g(t, "metadata", "name")))
    aff = g(sts, "spec", "template", "spec", "affinity", "podAntiAffinity",
            "preferredDuringSchedulingIgnoredDuringExecution", default=[]) or []
    if not any(g(a, "podAffinityTerm", "topologyKey") == "kubernetes.io/hostname" and
               subset(g(a, "podAffinityTerm", "labelSelector", "matchLabels", default={}), pod_labels(sts))
               for a in aff):
        err("StatefulSet/%s: no anti-affinity preferring one shard per node" % sname)
    argv = sts.get("_argv", [])
    for f in ("--shard", "--index", "--ids", "--data-dir", "--api-key-file"):
        if not has_flag(argv, f):
            err("StatefulSet/%s: freshd lacks %s" % (sname, f))
    for f in ("--index", "--ids", "--data-dir"):
        path = arg_value(argv, f)
        if path and not any(path == m or path.startswith(m + "/") for m in sts.get("_persistent", [])):
            err("StatefulSet/%s: %s %s is not on a persistent volume" % (sname, f, path))

    # --- the coordinator ----------------------------------------------------
    dname, dargv = g(dep, "metadata", "name"), dep.get("_argv", [])
    if g(dep, "spec", "replicas", default=1) != 1:
        err("Deployment/%s: the coordinator trains the corrector: replicas must be 1" % dname)
    if g(dep, "spec", "strategy", "type") != "Recreate":
        err("Deployment/%s: strategy must be Recreate (never two coordinators)" % dname)
    for f in ("--index", "--shard", "--demo", "--data-dir"):
        if has_flag(dargv, f):
            err("Deployment/%s: the coordinator takes no %s" % (dname, f))
    shards = arg_value(dargv, "--shards")
    if not shards:
        err("Deployment/%s: freshd has no --shards" % dname)
    else:
        urls = shards.split(",")
        want = ["http://%s-%d.%s:%s" % (sname, k, svcname, svcport) for k in range(replicas)]
        if urls != want:
            err("Deployment/%s: --shards names %d URLs %s; the StatefulSet has %d replicas: %s"
                % (dname, len(urls), urls, replicas, want))
        for u in urls:
            p = urlsplit(u)
            if p.scheme != "http" or not p.hostname or not p.port:
                err("Deployment/%s: shard URL %r is not http://HOST:PORT" % (dname, u))
    if not any(g(s, "spec", "type", default="ClusterIP") == "ClusterIP" and
               g(s, "spec", "clusterIP") != "None" and s.get("_workload") is dep for s in services):
        err("Deployment/%s: no ClusterIP Service selects the coordinator" % dname)
    # Both talk with one key.
    keys = set()
    for w in (sts, dep):
        c = freshd_container(w) or {}
        kf = arg_value(w.get("_argv", []), "--api-key-file")
        for m in c.get("volumeMounts", []) or []:
            if kf and kf.startswith(m.get("mountPath", "").rstrip("/") + "/"):
                for v in g(w, "spec", "template", "spec", "volumes", default=[]) or []:
                    if v.get("name") == m.get("name"):
                        keys.add(g(v, "secret", "secretName"))
    if len(keys) != 1:
        err("the shards and the coordinator must mount the same key Secret, found %s" % sorted(map(str, keys)))

# --- flags against the binary ------------------------------------------------
if freshd:
    listed = set()
    for line in open(helpfile):
        m = re.match(r"\s+(--[a-z0-9][a-z0-9-]*)", line)
        if m:
            listed.add(m.group(1))
    if len(listed) < 10:
        err("%s --help lists %d flags: not freshd's help?" % (freshd, len(listed)))
    for w in workloads:
        c = freshd_container(w)
        if c is None:
            continue
        argv = w.get("_argv", [])
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHD_")}
        used = [a.split("=", 1)[0] for a in argv if a.startswith("--")]
        for e in c.get("env", []) or []:
            k = e.get("name", "")
            if not k.startswith("FRESHD_"):
                continue
            used.append("--" + k[len("FRESHD_"):].lower().replace("_", "-"))
            rf = g(e, "valueFrom", "resourceFieldRef")
            if "value" in e:
                env[k] = str(e["value"])
            elif rf and rf.get("resource", "").endswith(".cpu"):
                kind_ = rf["resource"].split(".")[0]
                q = g(c, "resources", kind_, "cpu")
                if q is None:
                    err("%s: %s comes from %s, which is not set" % (name(w), k, rf["resource"]))
                    continue
                env[k] = str(math.ceil(cpu_cores(q) / cpu_cores(rf.get("divisor", "1"))))
            else:
                env[k] = "1"
        for f in used:
            if f not in listed:
                err("%s: freshd flag %s is not in `%s --help`" % (name(w), f, freshd))
        # The whole command line parses: every flag known, every value valid.
        r = subprocess.run([freshd] + argv + ["--help"], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60)
        if r.returncode != 0:
            err("%s: freshd rejects its command line: %s" % (name(w), r.stderr.strip()))

if errors:
    for e in errors:
        print("check_kubernetes: " + e, file=sys.stderr)
    sys.exit(1)
PY

echo "kubernetes manifests: ok"
