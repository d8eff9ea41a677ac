#!/usr/bin/env bash
# Refit now: in the background (202), then waiting for the result (200).
# Then publish the buffered fresh rows with the serving network, without
# training: 200 on a daemon started with --serve-fresh-rows, 409 without.
set -euo pipefail; . "$(dirname "$0")/common.sh"
call -X POST "$FRESHD/v1/refit"
call -X POST "$FRESHD/v1/refit?wait=true"
call -X POST "$FRESHD/v1/refit?rows_only=true&wait=true"
