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
import json, math, sys
a, out, teachers, objectives, seeds = sys.argv[1], sys.argv[2], *[x.split() for x in sys.argv[3:]]
# two-sided 95 % t quantiles by degrees of freedom
T = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
def stat(xs):
    m = sum(xs) / len(xs)
    if len(xs) < 2: return f"{100*m:.1f}"
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    return f"{100*m:.1f} ± {100*T.get(len(xs)-1, 1.96)*sd/math.sqrt(len(xs)):.1f}"
def read(p):
    s = json.load(open(p))["student"]
    return s["acc_test"], s["worst_class"]
print("| teacher | student | test, val-accuracy | test, val-worst-class | worst class, val-accuracy | worst class, val-worst-class |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
for t in teachers:
    for o in objectives:
        ref = [read(f"{a}/{t}/gratings/rho0/seed{s}/kd-{o}/metrics.json") for s in seeds]
        new = [read(f"{out}/{t}/seed{s}/kd-{o}/metrics.json") for s in seeds]
        print(f"| {t} | kd-{o} | {stat([r[0] for r in ref])} | {stat([r[0] for r in new])} "
              f"| {stat([r[1] for r in ref])} | {stat([r[1] for r in new])} |")
print(f"\nmean ± 95 % t-interval over seeds {' '.join(seeds)}, test split, %")
EOF
