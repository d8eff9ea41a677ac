#!/usr/bin/env bash
# Top-k: one query, then two at once with exclusions, then stale scoring.
set -euo pipefail; . "$(dirname "$0")/common.sh"
Q=$(fresh_of 42)
call "$FRESHD/v1/search" -d "{\"vector\": $Q, \"k\": 5}"
call "$FRESHD/v1/search" -d "{\"vectors\": [$Q, $Q], \"k\": 3, \"exclude\": [[42], []]}"
call "$FRESHD/v1/search" -d "{\"vector\": $Q, \"k\": 5, \"scoring\": \"stale\"}"
