#!/usr/bin/env bash
# Do the worst-class study's teacher effects survive another teacher? The
# longtail pipeline trains one teacher per (objective, r), seed 0. This
# trains more teachers (seeds TEACHER_SEEDS) on the pipeline's own teacher
# data with the pipeline's teacher arguments, distils std students from
# each (raw scores and, for a robust teacher, also --calibrated-teacher)
# on the pipeline's distillation data, and prints worst class / overall
# per teacher seed, seed 0 taken from the pipeline. Outputs under OUT;
# the pipeline's artifacts are only read.
#
#   scripts/longtail-teacher-seeds.sh [ARTIFACTS] [OUT]
#   defaults: artifacts/longtail, artifacts/longtail-teacher-seeds
#   IMBALANCE=10 OBJECTIVES="erm balanced dro" TEACHER_SEEDS="1 2" SEEDS="1 2 3 4 5"
set -euo pipefail
A=${1:-artifacts/longtail}
OUT=${2:-artifacts/longtail-teacher-seeds}
BIN=${BIN:-.build/release}
R=${IMBALANCE:-10}
OBJECTIVES=${OBJECTIVES:-erm balanced dro}
TEACHER_SEEDS=${TEACHER_SEEDS:-1 2}
SEEDS=${SEEDS:-1 2 3 4 5}
export SCRIPTS=$(cd "$(dirname "$0")" && pwd)
NAME=longtail-teacher-seeds
source "$SCRIPTS/longtail-common.sh"
require_inputs train-teacher distill evaluate

# The student variants of one teacher: std, and std from the calibrated teacher when it has a shift.
variants() { if [[ $1 == erm ]]; then echo std; else echo std std-cal; fi; }

for o in $OBJECTIVES; do
    src=$A/$o-if$R
    [[ -f $src/teacher.npz ]] || { echo "$NAME: missing $src/teacher.npz" >&2; exit 66; }
    for ts in $TEACHER_SEEDS; do
        t=$OUT/$o-if$R-t$ts
        mkdir -p "$t"
        if [[ ! -f $t/teacher.npz ]]; then
            echo "$NAME: teacher $o, r = $R, teacher seed $ts" >&2
            "$BIN/train-teacher" --train "$src/data/teacher-train.npz" --val "$src/data/teacher-val.npz" \
                --out "$t/teacher.npz" --arch c32,c32,p,c64,c64,p,c128,c128,p,gap,fc20 --seed "$ts" \
                --epochs 15 --objective "$o" > "$t/train-teacher.log" 2>&1
        fi
        for s in $SEEDS; do
            d=$src/gratings/rho0/seed$s
            for v in $(variants "$o"); do
                cal=(); [[ $v == *-cal ]] && cal=(--calibrated-teacher)
                kd_student "$t/teacher.npz" "$d/data" "$t/seed$s/kd-$v" "$s" "$R" "kd-$v" \
                    --objective std "${cal[@]}"
            done
        done
    done
done

python3 - "$A" "$OUT" "$R" "$OBJECTIVES" "$TEACHER_SEEDS" "$SEEDS" <<'EOF'
import json, os, sys
sys.path.insert(0, os.environ["SCRIPTS"])
from longtail_cells import cell
a, out, r, objectives, tseeds, seeds = sys.argv[1], sys.argv[2], sys.argv[3], *[x.split() for x in sys.argv[4:]]
def teacher_worst(path):
    return json.load(open(path))["teacher"]["worst_class"]
print("| teacher | teacher seed | teacher worst class % (seed 1 test) | student | worst class / overall, % (worst class per seed) |")
print("| --- | ---: | ---: | --- | --- |")
for o in objectives:
    for ts in ["0"] + tseeds:
        for v in (["std"] if o == "erm" else ["std", "std-cal"]):
            if ts == "0":
                paths = [f"{a}/{o}-if{r}/gratings/rho0/seed{s}/kd-{v}/metrics.json" for s in seeds]
            else:
                paths = [f"{out}/{o}-if{r}-t{ts}/seed{s}/kd-{v}/metrics.json" for s in seeds]
            student = "std" if v == "std" else "std, calibrated teacher"
            print(f"| {o} | {ts} | {100 * teacher_worst(paths[0]):.1f} | {student} | {cell(paths)} |")
print(f"\nr = {r}; teacher seed 0 is the pipeline's; students: mean ± 95 % t-interval over seeds {' '.join(seeds)}, test split")
EOF
