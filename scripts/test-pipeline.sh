#!/usr/bin/env bash
# Caching semantics of the Make DAG, checked on the tiny pipeline
# (pipelines/tiny.mk, seconds per run). Each check prints ok/FAIL; the last
# line is "pipeline: N passed, M failed".
#   1. after a full run `make -q` reports everything up to date
#   2. changing a distillation parameter re-runs only the distillations,
#      evaluations and the report, never synthesis, teacher or subspace
#   3. editing a stage's code does not make any finished stage run again
#   4. (SIGKILLs at random moments: scripts/test-reliability.sh)
#   5. make -j2 gives the same results as make -j1
#   6. estimating a variant's subspace on another split (BASIS_SPLITS,
#      BASIS_SPLIT_<variant>) makes that split and subspace and re-runs only
#      that variant's distillations, evaluations and the report
#   7. the tuning step wrote, per tuned method, every grid point's score and
#      the choice, and the tuned arm ran with the chosen values
#   8. every artifact's meta.json records the version and commit that
#      `<tool> --version` prints; the release tools exit 64 on a usage
#      error, 65 on bad input data, 74 on a missing file (docs/stages.md)
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release
T=$(mktemp -d "${TMPDIR:-/tmp}/subdistill-pipeline.XXXXXX")
trap 'rm -rf "$T"' EXIT
MAKE="make --no-print-directory PIPELINE=tiny"
# A stage command in make -n output (the build step does not count).
STAGE_CMD="$BIN/(synthesize|train-teacher|extract-subspace|distill|select-hparams|evaluate|report) "
pass=0; fail=0
ok()   { echo "ok   $1"; pass=$((pass + 1)); }
bad()  { echo "FAIL $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

source scripts/artifact-checks.sh  # (the cwd is the repository root)

mtimes() { (cd "$1" && find . -type f \( -name '*.npz' -o -name '*.json' -o -name '*.md' \) -printf '%p %T@\n' | sort); }

echo "pipeline tests in $T"
A=$T/ref
if ! $MAKE ARTIFACTS=$A all >"$T/ref.log" 2>&1; then
    tail -30 "$T/ref.log"; bad "tiny pipeline runs to the end"; echo "pipeline: $pass passed, $fail failed"; exit 1
fi
ok "tiny pipeline runs to the end"
cp -a "$A" "$T/ref-copy"

# 1.
check "make -q reports everything up to date after a full run" "$MAKE ARTIFACTS=$A -q all"
check "make again runs no stage" "! $MAKE ARTIFACTS=$A -n all | grep -qE '$STAGE_CMD'"

# 2.
mtimes "$A" >"$T/before"
$MAKE ARTIFACTS=$A all DISTILL_ARGS='--epochs 2 --batch 16' >"$T/param.log" 2>&1 || { tail -20 "$T/param.log"; bad "re-run with a changed distillation parameter"; }
mtimes "$A" >"$T/after"
changed=$(join "$T/before" "$T/after" | awk '$2 != $3 {print $1}')
upstream=$(echo "$changed" | grep -E '/data/|teacher\.npz|subspace\.npz' || true)
students=$(echo "$changed" | grep -c 'student\.npz' || true)
nstudents=$(grep -c 'student\.npz' "$T/before" || true)
check "a distillation parameter re-runs no synthesis, teacher or subspace" "[ -z \"$upstream\" ]"
check "a distillation parameter re-runs every distillation ($students of $nstudents)" "[ $students -eq $nstudents ] && [ $nstudents -gt 0 ]"
check "... and the evaluations and the report" "echo \"$changed\" | grep -q metrics.json && echo \"$changed\" | grep -q summary.md"
$MAKE ARTIFACTS=$A all >"$T/back.log" 2>&1
check "back to the original parameters gives the original results" "same_results $T/ref-copy $A"

# 3.
for src in Sources/Stages/distill/main.swift Sources/Core/NN/Model.swift Sources/Study/ShapesWorld; do
    f=$(find $src -name '*.swift' | head -1)
    check "editing $f re-runs no finished stage" "! $MAKE ARTIFACTS=$A -n -W $f all | grep -qE '$STAGE_CMD'"
done

# 4. SIGKILLs: the kill storm of scripts/test-reliability.sh.

# 5.
C=$T/parallel
$MAKE ARTIFACTS=$C -j2 all >"$T/j2.log" 2>&1 || tail -20 "$T/j2.log"
check "make -j2 gives the same results as make -j1" "same_results $T/ref-copy $C"

# 6.
mtimes "$A" >"$T/before6"
$MAKE ARTIFACTS=$A all BASIS_SPLITS=distill-train-clean BASIS_SPLIT_subdistill=distill-train-clean >"$T/basis.log" 2>&1 \
    || { tail -20 "$T/basis.log"; bad "re-run with a basis split"; }
mtimes "$A" >"$T/after6"
changed=$(join "$T/before6" "$T/after6" | awk '$2 != $3 {print $1}')
added=$(join -v 2 "$T/before6" "$T/after6" | awk '{print $1}')
upstream=$(echo "$changed" | grep -E '/data/|teacher\.npz|subspace\.npz' || true)
others=$(echo "$changed" | grep -E 'student\.npz|metrics\.json' | grep -v '/subdistill/' || true)
nsub=$(grep -c '/subdistill/student\.npz' "$T/before6" || true)
subs=$(echo "$changed" | grep -c '/subdistill/student\.npz' || true)
check "a basis split re-makes no existing data, teacher or subspace" "[ -z \"$upstream\" ]"
check "a basis split re-runs only that variant ($subs of $nsub subdistill runs, no other)" "[ -z \"$others\" ] && [ $subs -eq $nsub ] && [ $nsub -gt 0 ]"
check "a basis split adds the split and its subspace only" \
    "[ \"$(echo "$added" | grep -vcE '/data/distill-train-clean\.npz|/subspace-distill-train-clean\.npz')\" = 0 ] && echo \"$added\" | grep -q subspace-distill-train-clean"
f=$(echo "$added" | grep subspace-distill-train-clean | head -1)
check "the subspace records its basis split" \
    "python3 -c \"import json,sys,zipfile; p=json.loads(zipfile.ZipFile(sys.argv[1]).read('meta.json'))['parameters']; sys.exit(p.get('basis_split') != 'distill-train-clean')\" $A/$f"

# 7.
tuning_ok() {
    python3 - "$T/ref-copy" <<'PY'
import glob, json, sys, zipfile
root = sys.argv[1]
grids = {"kd": ("temperature", [1, 2, 4, 8]), "subdistill": ("lambda_layer", [0.1, 1, 10, 100])}
for m, (key, values) in grids.items():
    tunes = glob.glob(f"{root}/*/*/*/tune/{m}/tune.json")
    assert len(tunes) == 1, (m, tunes)
    t = json.load(open(tunes[0]))
    got = [c["values"][key] for c in t["candidates"]]
    assert got == values, (m, got)
    for c in t["candidates"]:
        assert len(c["val_accuracy"]) == 1 and 0 <= c["mean_val_accuracy"] <= 1, c
    best = max(c["mean_val_accuracy"] for c in t["candidates"])
    assert t["chosen_mean_val_accuracy"] == best and t["chosen"][key] in values, t["chosen"]
    tuned = glob.glob(f"{root}/*/*/*/rho*/seed*/{m}-tuned/student.npz")
    assert len(tuned) == 2, tuned
    for s in tuned:
        p = json.loads(zipfile.ZipFile(s).read("meta.json"))["parameters"]
        assert abs(p[key] - t["chosen"][key]) < 1e-6 and p["tuned"].endswith(f"tune/{m}/tune.json"), p
PY
}
check "the tuning step scores every grid point and the tuned arm uses the choice" tuning_ok

# 8.
version=$($BIN/tensors --version)
meta_ok=1
for f in $(finals "$T/ref-copy" | grep '\.npz$'); do
    python3 -c "import json,sys,zipfile; m=json.loads(zipfile.ZipFile(sys.argv[1]).read('meta.json')); sys.exit(f\"{m['toolVersion']} (commit {m.get('toolCommit')})\" != sys.argv[2])" \
        "$T/ref-copy/$f" "$version" || { echo "  $f: meta.json does not record $version"; meta_ok=0; }
done
check "every artifact's meta.json records the tools' version and commit ($version)" "[ $meta_ok -eq 1 ]"
check "every tool answers --version with it" \
    "( for t in synthesize train-teacher extract-subspace distill select-hparams evaluate report tensors; do [ \"\$($BIN/\$t --version)\" = \"$version\" ] || exit 1; done )"
printf 'not an artifact' > "$T/garbage.npz"
status() { "$@" >/dev/null 2>&1; echo $?; }
D=$T/ref-copy/tiny/teacher/gratings/rho0/seed1
check "usage error: exit 64" "[ \$(status $BIN/distill --teacher $T/ref-copy/tiny/teacher/teacher.npz --no-such-option) = 64 ]"
check "missing input file: exit 74" \
    "[ \$(status $BIN/evaluate --student $T/missing.npz --teacher $T/ref-copy/tiny/teacher/teacher.npz --data $D/data --out $T/m/metrics.json) = 74 ]"
check "input that is no artifact: exit 65" \
    "[ \$(status $BIN/extract-subspace --teacher $T/garbage.npz --data $D/data/distill-train.npz --out $T/s.npz) = 65 ]"
check "inputs that do not fit together: exit 65" \
    "[ \$(status $BIN/distill --teacher $T/ref-copy/tiny/teacher/teacher.npz --train $D/data/distill-train.npz --val $T/ref-copy/tiny/teacher/data/teacher-val.npz --out $T/x.npz --method kd) = 65 ]"

echo "pipeline: $pass passed, $fail failed"
[ $fail -eq 0 ]
