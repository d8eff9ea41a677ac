#!/usr/bin/env bash
# The Qdrant-compatible subset: the version check, the collection, a query
# for the 3 nearest targets of target 42's fresh embedding, the points
# themselves, and an upsert (a training update: the fresh embedding of 42).
set -euo pipefail; . "$(dirname "$0")/common.sh"
[ -n "${FRESHD_KEY:-}" ] && AUTH=(-H "api-key: $FRESHD_KEY")
v=$(fresh_of 42)
call "$FRESHD/"
call "$FRESHD/collections/freshd" | cut -c1-200
call "$FRESHD/collections/freshd/points/query" -H 'Content-Type: application/json' \
  -d "{\"query\": $v, \"limit\": 3}"
call "$FRESHD/collections/freshd/points" -H 'Content-Type: application/json' \
  -d '{"ids": [42, 43], "with_payload": true}'
call -X PUT "$FRESHD/collections/freshd/points?wait=true" -H 'Content-Type: application/json' \
  -d "{\"points\": [{\"id\": 42, \"vector\": $v}]}"
