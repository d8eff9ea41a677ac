#!/usr/bin/env bash
# Hard negatives for a training step: the best n, then n sampled from
# softmax(score / temperature), reproducibly, each with its log-probability.
set -euo pipefail; . "$(dirname "$0")/common.sh"
Q=$(fresh_of 7)
call "$FRESHD/v1/negatives" -d "{\"vectors\": [$Q], \"positives\": [[7]], \"n\": 4, \"method\": \"topk\"}"
call "$FRESHD/v1/negatives" -d "{\"vectors\": [$Q], \"positives\": [[7]], \"n\": 4, \"method\": \"sample\", \"temperature\": 0.05, \"seed\": 7}"
