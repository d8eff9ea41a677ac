#!/usr/bin/env bash
# Prometheus metrics (text format).
set -euo pipefail; . "$(dirname "$0")/common.sh"
call "$FRESHD/metrics" | grep -E '^freshd_(corrector_version|pairs_buffered|refits_total)'
