#!/usr/bin/env bash
# Reliability of the stages and the Make DAG under what users do to them,
# checked on the tiny pipeline (pipelines/tiny.mk) with the release tools.
# Each check prints ok/FAIL (or skip, with the reason); the last line is
# "reliability: N passed, M failed, K skipped".
#   1. provenance: evaluate refuses a teacher other than the student's, and
#      test splits of another world, naming both digests/files and writing
#      nothing; --allow-mismatch runs and records the mismatch
#   2. damaged inputs through the stage tools: seeded mutations of a data
#      split, teacher, student, subspace and metrics file are refused with
#      exit 65/74 and a named error, no crash, no hang, no output
#   3. a kill storm: SIGKILLs at seeded random moments of make -j2, each
#      followed by the next make; no partial artifact at a final path after
#      any kill; the end result bit-identical to an uninterrupted run
#   4. two makes on one artifacts folder: the second refuses with a clear
#      message; with LOCK_WAIT=1 it waits; a SIGKILLed make leaves no stale
#      lock
#   5. a full disk (root, tmpfs): make fails with a named error and leaves
#      no partial artifact at a final path; with space again it finishes,
#      bit-identical to an uninterrupted run
# The in-process fuzz of every reader (1,250 mutations) is the FuzzTests
# unit test (swift test).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release
T=$(mktemp -d "${TMPDIR:-/tmp}/subdistill-reliability.XXXXXX")
MNT=""
cleanup() { [ -n "$MNT" ] && umount "$MNT" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
MAKE="make --no-print-directory PIPELINE=tiny"
pass=0; fail=0; skip=0
ok()   { echo "ok   $1"; pass=$((pass + 1)); }
bad()  { echo "FAIL $1"; fail=$((fail + 1)); }
skipped() { echo "skip $1"; skip=$((skip + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

source scripts/artifact-checks.sh  # (the cwd is the repository root)

echo "reliability tests in $T"
R=$T/ref
ref_start=$(date +%s.%N)
if ! $MAKE ARTIFACTS=$R -j2 all >"$T/ref.log" 2>&1; then
    tail -30 "$T/ref.log"; bad "tiny pipeline runs to the end"; echo "reliability: $pass passed, $fail failed, $skip skipped"; exit 1
fi
ref_seconds=$(awk -v a=$ref_start -v b=$(date +%s.%N) 'BEGIN { printf "%.1f", b - a }')
ok "tiny pipeline runs to the end (reference, ${ref_seconds}s)"
TEACHER=$R/tiny/teacher/teacher.npz
D=$R/tiny/teacher/gratings/rho1/seed1

# 1. Provenance.
python3 - "$TEACHER" "$T/teacher-scaled.npz" <<'EOF'
import io, sys, zipfile, numpy as np
# The same teacher with its last layer's weights scaled by 1.5: a valid archive.
zi = zipfile.ZipFile(sys.argv[1]); zo = zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED)
last = sorted(n for n in zi.namelist() if n.endswith('.fc.weight.npy'))[-1]
for n in zi.namelist():
    b = zi.read(n)
    if n == last:
        a = np.load(io.BytesIO(b)) * 1.5; o = io.BytesIO(); np.save(o, a); b = o.getvalue()
    zo.writestr(n, b)
zo.close()
EOF
sha() { sha256sum "$1" | cut -d' ' -f1; }
$BIN/evaluate --student $D/kd/student.npz --teacher $T/teacher-scaled.npz --data $D/data --out $T/prov/metrics.json >"$T/prov.out" 2>"$T/prov.err"
st=$?
check "evaluate with another teacher than the student's: exit 65" "[ $st = 65 ]"
check "... the error names both digests and both files" \
    "grep -q $(sha $TEACHER) $T/prov.err && grep -q $(sha $T/teacher-scaled.npz) $T/prov.err && grep -q teacher-scaled.npz $T/prov.err && grep -q kd/student.npz $T/prov.err"
check "... and nothing is written" "[ ! -e $T/prov ]"
$BIN/evaluate --student $D/kd/student.npz --teacher $T/teacher-scaled.npz --data $D/data --out $T/prov/metrics.json --allow-mismatch >/dev/null 2>&1
check "--allow-mismatch runs and records the mismatch in metrics.npz" \
    "python3 -c \"import json,sys,zipfile; m=json.loads(zipfile.ZipFile('$T/prov/metrics.npz').read('meta.json')); sys.exit(0 if '$(sha $T/teacher-scaled.npz)' in ' '.join(m['extra']['provenance_mismatches']) else 1)\""
# Test splits of another world: the same images, the family renamed.
mkdir -p "$T/otherworld"
for s in test test-clean test-conflict; do
    python3 - "$D/data/$s.npz" "$T/otherworld/$s.npz" <<'EOF'
import json, sys, zipfile
zi = zipfile.ZipFile(sys.argv[1]); zo = zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED)
for n in zi.namelist():
    b = zi.read(n)
    if n == 'meta.json':
        m = json.loads(b); m['parameters']['family'] = 'stars'; b = json.dumps(m).encode()
    zo.writestr(n, b)
zo.close()
EOF
done
$BIN/evaluate --student $D/kd/student.npz --teacher $TEACHER --data $T/otherworld --out $T/prov2/metrics.json >/dev/null 2>"$T/prov2.err"
st=$?
check "evaluate on test splits of another world: exit 65, the differing field named, nothing written" \
    "[ $st = 65 ] && grep -q 'family: stars ≠ gratings' $T/prov2.err && [ ! -e $T/prov2 ]"

# 2. Damaged inputs through the tools: 8 seeded mutations per kind.
python3 - "$T/fuzz" <<EOF
import os, random, sys
out = sys.argv[1]; os.makedirs(out)
rng = random.Random(2026)
kinds = {'split': '$D/data/test.npz', 'teacher': '$TEACHER', 'student': '$D/kd/student.npz',
         'subspace': '$D/subspace.npz', 'metrics': '$D/kd/metrics.npz'}
for kind, path in kinds.items():
    b = open(path, 'rb').read()
    for i in range(8):
        m = bytearray(b); op = i % 4; at = rng.randrange(len(m))
        if op == 0: m[at] ^= 1 << rng.randrange(8)
        elif op == 1: m = m[:at]
        elif op == 2: m[at:at + 64] = bytes(min(64, len(m) - at))
        else: m[at:at] = os.urandom(8)
        d = f'{out}/{kind}-{i}'; os.makedirs(d)
        open(f'{d}/{os.path.basename(path)}', 'wb').write(m)
EOF
fuzz_ok=1; fuzz_n=0
for d in "$T"/fuzz/*; do
    kind=$(basename "$d"); kind=${kind%-*}; f=$(ls "$d")
    student=$D/kd/student.npz teacher=$TEACHER data=$D/data subspace=()
    case $kind in
    split) cp $D/data/test-clean.npz $D/data/test-conflict.npz "$d/"; data=$d ;;
    teacher) teacher=$d/$f ;;
    student) student=$d/$f ;;
    subspace) student=$D/subdistill/student.npz; subspace=(--subspace "$d/$f") ;;
    esac
    if [ $kind = metrics ]; then
        cmd=($BIN/tensors show "$d/$f")
    else
        cmd=($BIN/evaluate --student "$student" --teacher "$teacher" --data "$data" "${subspace[@]}" --out "$d/out/metrics.json" --allow-mismatch)
    fi
    timeout 120 "${cmd[@]}" >"$d.out" 2>"$d.err"
    st=$?
    fuzz_n=$((fuzz_n + 1))
    if [ $st = 0 ]; then
        # Accepted: the damage must have left the arrays as they were.
        $BIN/tensors diff "$d/$f" "$(case $kind in split) echo $D/data/test.npz;; teacher) echo $TEACHER;; student) echo $D/kd/student.npz;; subspace) echo $D/subspace.npz;; metrics) echo $D/kd/metrics.npz;; esac)" --tol 0 >/dev/null 2>&1 \
            || { echo "  $d: accepted with different content"; fuzz_ok=0; }
    elif [ $st != 65 ] && [ $st != 74 ]; then
        echo "  $d: exit $st (crash, hang or unclassified failure)"; tail -2 "$d.err"; fuzz_ok=0
    elif ! grep -q "error:" "$d.err" || ! grep -q "$f" "$d.err"; then
        echo "  $d: the error does not name the file"; tail -2 "$d.err"; fuzz_ok=0
    elif [ -e "$d/out" ]; then
        echo "  $d: refused, but wrote output"; fuzz_ok=0
    fi
done
check "$fuzz_n damaged inputs through the tools: refused (65/74, named, nothing written) or read identical" "[ $fuzz_ok = 1 ] && [ $fuzz_n -ge 40 ]"

# 3. Kill storm.
K=$T/storm
kills=0 partial=0
RANDOM=2026
# Kill moments uniform in (0.1 s, 0.1 s + reference time / 25): each make
# resumes the last one's work, so 24 of them cover about the whole run at
# moments that fall inside stages, renames and make's own bookkeeping.
span=$(awk -v d=$ref_seconds 'BEGIN { printf "%d", d * 1000 / 25 }')
for i in $(seq 1 24); do
    setsid $MAKE ARTIFACTS=$K -j2 all >"$T/storm.log" 2>&1 &
    pid=$!
    sleep "$(awk -v r=$RANDOM -v s=$span 'BEGIN { printf "%.3f", 0.1 + (r % (s + 1)) / 1000 }')"
    if kill -0 $pid 2>/dev/null; then
        kill -KILL -- -$pid 2>/dev/null && kills=$((kills + 1))
    fi
    wait $pid 2>/dev/null
    all_readable "$K" || { echo "  partial artifact after kill $i"; partial=1; }
done
$MAKE ARTIFACTS=$K -j2 all >"$T/storm-final.log" 2>&1 || tail -20 "$T/storm-final.log"
check "kill storm: $kills SIGKILLs of make -j2, no partial artifact at a final path after any" "[ $kills -ge 20 ] && [ $partial = 0 ]"
check "kill storm: the final make ends bit-identical to an uninterrupted run" "same_results $R $K"

# 4. Two makes on one folder.
L=$T/locked
setsid $MAKE ARTIFACTS=$L all >"$T/first.log" 2>&1 &
first=$!
for _ in $(seq 1 300); do [ -s "$L/tiny/.make.lock.owner" ] && break; sleep 0.1; done
start=$(date +%s)
$MAKE ARTIFACTS=$L all >"$T/second.log" 2>&1
st=$?
took=$(( $(date +%s) - start ))
check "a second make on the same folder refuses (exit $st, ${took}s) and says why" \
    "[ $st != 0 ] && grep -q 'another make is running on $L/tiny' $T/second.log && [ $took -lt 30 ]"
LOCK_WAIT=1 $MAKE ARTIFACTS=$L all >"$T/third.log" 2>&1 &
third=$!
sleep 3
check "with LOCK_WAIT=1 it waits" "kill -0 $third 2>/dev/null && grep -q 'waiting for the other make' $T/third.log"
kill -KILL -- -$first 2>/dev/null; wait $first 2>/dev/null
wait $third
st=$?
check "after the first make is SIGKILLed the waiting one takes over and finishes (no stale lock)" "[ $st = 0 ] && same_results $R $L"

# 5. A full disk.
if [ "$(id -u)" != 0 ]; then
    skipped "full disk: needs root to mount a small tmpfs (running as $(id -un))"
elif ! { mkdir -p "$T/disk" && mount -t tmpfs -o size=6m tmpfs "$T/disk"; }; then
    skipped "full disk: mounting a tmpfs failed (no CAP_SYS_ADMIN in this container?)"
else
    MNT=$T/disk
    $MAKE ARTIFACTS=$MNT all >"$T/full.log" 2>&1
    st=$?
    check "make on a full disk fails (exit $st) with a named error" "[ $st != 0 ] && grep -qi 'no space left' $T/full.log"
    check "... and leaves no partial artifact at a final path" "all_readable $MNT"
    mount -o remount,size=200m "$MNT"
    $MAKE ARTIFACTS=$MNT all >"$T/full2.log" 2>&1 || tail -20 "$T/full2.log"
    check "with space again, make finishes bit-identical to an uninterrupted run" "same_results $R $MNT"
    umount "$MNT" && MNT=""
fi

echo "reliability: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
