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
for tool in distill evaluate; do
    [[ -x $BIN/$tool ]] || { echo "longtail-select-by: $BIN/$tool not built (make build)" >&2; exit 66; }
done
[[ -d $A ]] || { echo "longtail-select-by: no pipeline artifacts at $A (make PIPELINE=longtail)" >&2; exit 66; }

for t in $TEACHERS; do
    imb=${t##*-if}
    for s in $SEEDS; do
        d=$A/$t/gratings/rho0/seed$s
        for o in $OBJECTIVES; do
            ref=$d/kd-$o/metrics.json
            [[ -f $ref ]] || { echo "longtail-select-by: missing $ref" >&2; exit 66; }
            o_dir=$OUT/$t/seed$s/kd-$o
            [[ -f $o_dir/metrics.json ]] && continue
            mkdir -p "$o_dir"
            echo "longtail-select-by: $t seed $s kd-$o" >&2
            "$BIN/distill" --teacher "$A/$t/teacher.npz" --train "$d/data/distill-train.npz" \
                --val "$d/data/distill-val.npz" --out "$o_dir/student.npz" --method kd \
                --arch c8,p,c16,p,c16,p,gap,fc5 --seed "$s" --epochs 40 --objective "$o" \
                --select-by val-worst-class > "$o_dir/distill.log" 2>&1
            "$BIN/evaluate" --student "$o_dir/student.npz" --teacher "$A/$t/teacher.npz" --data "$d/data" \
                --out "$o_dir/metrics.json" --set pipeline=longtail-select-by --set teacher="$t" \
                --set subtask=gratings --set rho=0 --set seed="$s" --set method="kd-$o" \
                --set imbalance="$imb" > "$o_dir/evaluate.log" 2>&1
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
