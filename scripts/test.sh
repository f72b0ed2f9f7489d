#!/usr/bin/env bash
# Installs what the tests need (system packages, npm packages, the Go interop helpers) and runs every test.
# Usage: ./scripts/test.sh [test files…]   (default: every test/**/*.test.ts)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
npm ci --no-audit --no-fund --loglevel=error
npm run --silent typecheck
if [ $# -gt 0 ]; then files=("$@"); else mapfile -t files < <(find test -name '*.test.ts' | sort); fi
# Tests that mount or run registries run one file at a time: the machine has 2 cores and FUSE tests
# must not fight for them; within a file, tests run in order. A test without a timeout of its own
# fails after 5 minutes instead of holding the suite (the slowest take under 2).
exec node --import tsx --test --test-concurrency=1 --test-timeout=300000 --test-reporter=spec "${files[@]}"
