# Sourced by the examples: the server's address and a query vector.
# Every example runs against `freshd --demo` (128 dimensions); set FRESHD
# to point elsewhere, and FRESHD_KEY when the server wants a key.
FRESHD="${FRESHD:-http://127.0.0.1:8080}"
AUTH=()
[ -n "${FRESHD_KEY:-}" ] && AUTH=(-H "Authorization: Bearer $FRESHD_KEY")
# curl wrapper: prints the body, then the status on its own line.
call() { curl -sS "${AUTH[@]}" -w '\n%{http_code}\n' "$@"; }
# The new encoder's embedding of demo target $1, as a JSON array.
fresh_of() {
  curl -sS "${AUTH[@]}" "$FRESHD/v1/demo/fresh" -d "{\"ids\": [$1]}" |
    python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["vectors"][0]))'
}
