#!/usr/bin/env bash
# The corrector's state, then a reset to the identity (version + 1).
set -euo pipefail; . "$(dirname "$0")/common.sh"
call "$FRESHD/v1/corrector"
call -X POST "$FRESHD/v1/corrector/reset"
