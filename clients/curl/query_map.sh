#!/usr/bin/env bash
# The published corrector as a map of queries (W, b with <q, h(s)> =
# <W^T q, s> + <q, b>): JSON with base64 float32, and as one .npy of [W | b].
# An MLP or normalized corrector answers 409 not_affine instead.
set -euo pipefail; . "$(dirname "$0")/common.sh"
call "$FRESHD/v1/corrector/query-map" | cut -c1-200
call -H 'Accept: application/octet-stream' -o /dev/null "$FRESHD/v1/corrector/query-map"
