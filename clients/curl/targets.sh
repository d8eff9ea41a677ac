#!/usr/bin/env bash
# One target: its stale, corrected and newest fresh embedding; then the
# corrected vectors of several targets (long vectors cut for display).
set -euo pipefail; . "$(dirname "$0")/common.sh"
call "$FRESHD/v1/targets/10" | cut -c1-200
call "$FRESHD/v1/corrected" -d '{"ids": [1, 2, 3]}' | cut -c1-200
