#!/usr/bin/env bash
# The test suite (`make test`): the unit tests (swift test). The Make-DAG
# tests (scripts/test-pipeline.sh) join once every stage tool is in place.
set -euo pipefail
cd "$(dirname "$0")/.."
swift test
