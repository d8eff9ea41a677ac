#!/usr/bin/env bash
# Refit now: in the background (202), then waiting for the result (200).
set -euo pipefail; . "$(dirname "$0")/common.sh"
call -X POST "$FRESHD/v1/refit"
call -X POST "$FRESHD/v1/refit?wait=true"
