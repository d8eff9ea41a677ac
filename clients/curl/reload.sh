#!/usr/bin/env bash
# Swap in a re-embedded index (a file under the data dir), then watch it.
# Usage: reload.sh FILE.npy   (a path relative to the server's --data-dir)
set -euo pipefail; . "$(dirname "$0")/common.sh"
call "$FRESHD/v1/index/reload" -d "{\"path\": \"${1:-reembedded.npy}\"}"
sleep 1
curl -sS "${AUTH[@]}" "$FRESHD/v1/info" |
  python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["index"]))'
