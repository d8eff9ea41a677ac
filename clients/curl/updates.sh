#!/usr/bin/env bash
# Fresh embeddings of two targets, with the trainer step, and a query whose
# positive is one of them (for the logit term).
set -euo pipefail; . "$(dirname "$0")/common.sh"
A=$(fresh_of 10); B=$(fresh_of 11)
call "$FRESHD/v1/updates" -d "{\"targets\": [{\"id\": 10, \"vector\": $A}, {\"id\": 11, \"vector\": $B}], \"queries\": [{\"vector\": $A, \"positive\": 10}], \"step\": 1200}"
