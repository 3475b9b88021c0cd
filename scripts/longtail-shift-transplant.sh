#!/usr/bin/env bash
# Is the logit shift of a robust teacher what helps its students? The
# longtail pipeline's calibrated-teacher arm removes a robust teacher's
# shift log w; this is the converse: the erm teacher's weights with a
# robust teacher's shift added to its scores. Each transplanted teacher
# is a copy of the erm teacher's teacher.npz whose `log_shift` entry is
# replaced by minus the donor's, so that `distill --calibrated-teacher`
# (which distils from softmax(z − log_shift)) sees z + log w_donor. Outputs
# go under OUT; the pipeline's artifacts are only read. Prints the std
# students' worst-class and overall test accuracy beside the pipeline's
# erm → std and donor → std students.
#
#   scripts/longtail-shift-transplant.sh [ARTIFACTS] [OUT]
#   defaults: artifacts/longtail, artifacts/longtail-shift-transplant
#   IMBALANCES="10 30" DONORS="balanced dro" OBJECTIVES="std" SEEDS="1 2 3 4 5"
set -euo pipefail
A=${1:-artifacts/longtail}
OUT=${2:-artifacts/longtail-shift-transplant}
BIN=${BIN:-.build/release}
IMBALANCES=${IMBALANCES:-10 30}
DONORS=${DONORS:-balanced dro}
OBJECTIVES=${OBJECTIVES:-std}
SEEDS=${SEEDS:-1 2 3 4 5}
export SCRIPTS=$(cd "$(dirname "$0")" && pwd)
NAME=longtail-shift-transplant
source "$SCRIPTS/longtail-common.sh"
require_inputs distill evaluate

for r in $IMBALANCES; do
    for donor in $DONORS; do
        t=$OUT/erm+$donor-shift-if$r
        mkdir -p "$t"
        if [[ ! -f $t/teacher.npz ]]; then
            python3 - "$A/erm-if$r/teacher.npz" "$A/$donor-if$r/teacher.npz" "$t/teacher.npz" <<'EOF'
import io, os, sys, zipfile
import numpy as np
src, donor, out = sys.argv[1:]
shift = np.load(donor)["log_shift"]
tmp = out + ".tmp"
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
    for name in zin.namelist():
        data = zin.read(name)
        if name == "log_shift.npy":
            old = np.load(io.BytesIO(data))
            assert old.shape == shift.shape and not old.any(), "the erm teacher should carry a zero shift"
            b = io.BytesIO(); np.save(b, (-shift).astype(old.dtype)); data = b.getvalue()
        zout.writestr(name, data)
os.replace(tmp, out)
EOF
        fi
        for s in $SEEDS; do
            d=$A/erm-if$r/gratings/rho0/seed$s
            for o in $OBJECTIVES; do
                kd_student "$t/teacher.npz" "$d/data" "$t/seed$s/kd-$o" "$s" "$r" "kd-$o" \
                    --objective "$o" --calibrated-teacher
            done
        done
    done
done

python3 - "$A" "$OUT" "$IMBALANCES" "$DONORS" "$OBJECTIVES" "$SEEDS" <<'EOF'
import os, sys
sys.path.insert(0, os.environ["SCRIPTS"])
from longtail_cells import cell
a, out, imbalances, donors, objectives, seeds = sys.argv[1], sys.argv[2], *[x.split() for x in sys.argv[3:]]
print("| r | student | teacher | worst class / overall, % (worst class per seed) |")
print("| ---: | --- | --- | --- |")
for r in imbalances:
    for o in objectives:
        print(f"| {r} | kd-{o} | erm | {cell([f'{a}/erm-if{r}/gratings/rho0/seed{s}/kd-{o}/metrics.json' for s in seeds])} |")
        for dn in donors:
            print(f"| {r} | kd-{o} | erm + {dn} shift | {cell([f'{out}/erm+{dn}-shift-if{r}/seed{s}/kd-{o}/metrics.json' for s in seeds])} |")
            print(f"| {r} | kd-{o} | {dn} | {cell([f'{a}/{dn}-if{r}/gratings/rho0/seed{s}/kd-{o}/metrics.json' for s in seeds])} |")
print(f"\nmean ± 95 % t-interval over seeds {' '.join(seeds)}, test split")
EOF
