#!/bin/bash
# The long fuzz run by hand: every fuzz target for SECONDS each (default 300), a fresh seed unless
# FUZZ_SEED is set. Violating inputs land in test/fuzz/crashes/; move each into
# test/fuzz/regressions/<target>/ once the bug is fixed (test/fuzz/regressions.test.ts replays them).
#   scripts/fuzz.sh [SECONDS] [--target NAME]...
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
shift || true
exec node --import tsx test/fuzz/run.ts --seconds "$seconds" ${FUZZ_SEED:+--seed "$FUZZ_SEED"} "$@"
