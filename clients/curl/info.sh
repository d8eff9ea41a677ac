#!/usr/bin/env bash
# The index, the corrector and the version of the server.
set -euo pipefail; . "$(dirname "$0")/common.sh"
call "$FRESHD/v1/info"
