#!/usr/bin/env bash
# The test suite (`make test`): the Make-DAG tests on the tiny pipeline
# (release tools, scripts/test-pipeline.sh), then the unit tests (swift test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-pipeline.sh
# Serial: the NN layers set OpenBLAS's process-wide thread count, so two tests
# running at once in one process would change each other's arithmetic.
swift test --no-parallel
