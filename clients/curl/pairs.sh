#!/usr/bin/env bash
# Clear the buffer of fresh pairs (durably).
set -euo pipefail; . "$(dirname "$0")/common.sh"
call -X DELETE "$FRESHD/v1/pairs"
