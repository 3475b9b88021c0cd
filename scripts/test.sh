#!/usr/bin/env bash
# The test suite: unit tests (swift test), then the pipeline tests on the
# tiny pipeline when the stage tools exist.
set -euo pipefail
cd "$(dirname "$0")/.."
swift test
