#!/usr/bin/env bash
# The test suite (`make test`): the Make-DAG tests on the tiny pipeline
# (release tools, scripts/test-pipeline.sh), provenance refusals, damaged
# inputs, a kill storm, two makes at once and a full disk
# (scripts/test-reliability.sh), every method on the default
# student (release tools, scripts/test-methods.sh), real MNIST digits
# through the CLI and the DAG (scripts/test-mnist.sh), then the unit tests
# (swift test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-pipeline.sh
bash scripts/test-reliability.sh
bash scripts/test-methods.sh
bash scripts/test-mnist.sh
swift test
