#!/usr/bin/env bash
# Does the epoch-selection rule change the worst-class study's conclusions?
# The longtail pipeline keeps every student's epoch by validation accuracy
# (distill's default). This re-distils a few of its cells with
# `--select-by val-worst-class` beside the pipeline's runs (same teacher,
# data, seed and arguments; outputs under OUT, the pipeline's artifacts
# are only read) and prints both students' test and worst-class accuracy.
#
#   scripts/longtail-select-by.sh [ARTIFACTS] [OUT]
#   defaults: artifacts/longtail, artifacts/longtail-select-by
#   TEACHERS="erm-if10 erm-if30" OBJECTIVES="std balanced dro" SEEDS="1 2 3 4 5"
set -euo pipefail
A=${1:-artifacts/longtail}
OUT=${2:-artifacts/longtail-select-by}
BIN=${BIN:-.build/release}
TEACHERS=${TEACHERS:-erm-if10 erm-if30}
OBJECTIVES=${OBJECTIVES:-std balanced dro}
SEEDS=${SEEDS:-1 2 3 4 5}
export SCRIPTS=$(cd "$(dirname "$0")" && pwd)
NAME=longtail-select-by
source "$SCRIPTS/longtail-common.sh"
require_inputs distill evaluate

for t in $TEACHERS; do
    imb=${t##*-if}
    for s in $SEEDS; do
        d=$A/$t/gratings/rho0/seed$s
        for o in $OBJECTIVES; do
            ref=$d/kd-$o/metrics.json
            [[ -f $ref ]] || { echo "$NAME: missing $ref" >&2; exit 66; }
            kd_student "$A/$t/teacher.npz" "$d/data" "$OUT/$t/seed$s/kd-$o" "$s" "$imb" "kd-$o" \
                --objective "$o" --select-by val-worst-class
        done
    done
done

python3 - "$A" "$OUT" "$TEACHERS" "$OBJECTIVES" "$SEEDS" <<'EOF'
import os, sys
sys.path.insert(0, os.environ["SCRIPTS"])
from longtail_cells import stat, students
a, out, teachers, objectives, seeds = sys.argv[1], sys.argv[2], *[x.split() for x in sys.argv[3:]]
print("| teacher | student | test, val-accuracy | test, val-worst-class | worst class, val-accuracy | worst class, val-worst-class |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
for t in teachers:
    for o in objectives:
        ref = students([f"{a}/{t}/gratings/rho0/seed{s}/kd-{o}/metrics.json" for s in seeds])
        new = students([f"{out}/{t}/seed{s}/kd-{o}/metrics.json" for s in seeds])
        print(f"| {t} | kd-{o} | {stat([m['acc_test'] for m in ref])} | {stat([m['acc_test'] for m in new])} "
              f"| {stat([m['worst_class'] for m in ref])} | {stat([m['worst_class'] for m in new])} |")
print(f"\nmean ± 95 % t-interval over seeds {' '.join(seeds)}, test split, %")
EOF
