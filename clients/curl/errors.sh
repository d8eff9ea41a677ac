#!/usr/bin/env bash
# The error envelope: each of these is refused with a 4xx and a message
# that names the field (and changes nothing).
set -uo pipefail; . "$(dirname "$0")/common.sh"
call "$FRESHD/v1/search" -d '{"vector": [1, 2'                        # 400 invalid_json
call "$FRESHD/v1/search" -d '{"vector": [1, 2, 3]}'                    # 400 wrong dimension
call "$FRESHD/v1/search" -d '{"vector": [], "k": 0}'                   # 400 k out of range
call "$FRESHD/v1/search" -d '{"vectors": [[1e39]]}'                    # 400 not a float32
call "$FRESHD/v1/updates" -d "{\"targets\": [{\"id\": 999999999, \"vector\": $(fresh_of 1)}]}"  # 404 unknown id
call "$FRESHD/v1/targets/999999999"                                    # 404
call -X DELETE "$FRESHD/v1/search"                                     # 405, with Allow
call -H 'Content-Type: text/plain' "$FRESHD/v1/search" -d '{}'         # 415
call -X PUT --data-binary 'not a checkpoint' "$FRESHD/v1/corrector/checkpoint"  # 400
exit 0
