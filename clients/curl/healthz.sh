#!/usr/bin/env bash
# Liveness and readiness probes (never need a key).
set -euo pipefail; . "$(dirname "$0")/common.sh"
call "$FRESHD/healthz"
call "$FRESHD/readyz"
