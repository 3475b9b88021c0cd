#!/usr/bin/env bash
# End-to-end test of the Make DAG under a real Slurm scheduler, on the
# throwaway single-node cluster of scripts/slurm-cluster.sh.
#
#  1. starts the cluster (own state folder and ports; stopped at exit);
#  2. runs the pipeline locally (make PIPELINE=tiny) into one artifact root
#     and through Slurm (make -j4 LAUNCH='srun -n1 -c1') into another
#     (roots chosen with the Makefile's ARTIFACTS= override);
#  3. checks with `sacct -c` (job-completion log, no slurmdbd) that every
#     stage command of the DAG ran as its own Slurm job, completed, from this
#     folder, with the requested CPUs;
#  4. checks every final artifact (*.npz, metrics.json) is identical between
#     the two roots: every tensor bit for bit (`tensors diff --tol 0` as well
#     when that tool proves it can tell two artifacts apart), the metadata
#     except creation times, input digests and run diagnostics (meta.extra),
#     metrics.json except timings;
#  5. failure test: removes the Slurm root, runs it again and `scancel`s the
#     job of a stage while its process runs, with make frozen (SIGSTOP) so
#     that .DELETE_ON_ERROR cannot hide a partial write: once the job is
#     over, every artifact at a final path must be complete. Then make goes
#     on and must fail, the cancelled job be CANCELLED in sacct, its target
#     absent; a rerun of make must run exactly the stages not completed
#     before (none twice), and its artifacts equal the local run's.
#
# Prints `SKIP: <reason>` and exits 0 only when the cluster cannot start for
# lack of root or of the Slurm/munge packages; any other problem fails.
#
# Environment (defaults in brackets):
#   CLUSTER_TEST_PIPELINE [tiny]   CLUSTER_TEST_JOBS [4]
#   CLUSTER_TEST_SRUN ['srun -n1 -c1']          the LAUNCH of the Slurm runs
#   CLUSTER_TEST_CANCEL [train-teacher extract-subspace distill evaluate synthesize]
#                          stages whose job may be cancelled (first seen running)
#   CLUSTER_TEST_CANCEL_DELAY [0]  seconds between seeing the stage's process
#                                  and cancelling its job
#   CLUSTER_TEST_TIMEOUT [1800]    seconds allowed to one make run
#   CLUSTER_TEST_KEEP [0]          1 keeps the work folder (always kept on failure)
#   CLUSTER_TEST_REPO [this repository]  where make runs
#   CLUSTER_TEST_TOOLS [synthesize train-teacher extract-subspace distill evaluate report]
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "${CLUSTER_TEST_REPO:-$HERE/..}" && pwd)
PIPELINE=${CLUSTER_TEST_PIPELINE:-tiny}
JOBS=${CLUSTER_TEST_JOBS:-4}
SRUN=${CLUSTER_TEST_SRUN:-srun -n1 -c1}
TOOLS=${CLUSTER_TEST_TOOLS:-synthesize train-teacher extract-subspace distill evaluate report}
CANCEL_STAGES=${CLUSTER_TEST_CANCEL:-train-teacher extract-subspace distill evaluate synthesize}
CANCEL_DELAY=${CLUSTER_TEST_CANCEL_DELAY:-0}
RUN_TIMEOUT=${CLUSTER_TEST_TIMEOUT:-1800}
KEEP=${CLUSTER_TEST_KEEP:-0}
BIN=.build/release
# The test's own cluster, apart from one started by hand (default folder and
# ports of slurm-cluster.sh), so neither disturbs the other.
export SLURM_CLUSTER_DIR=${CLUSTER_TEST_STATEDIR:-${TMPDIR:-/tmp}/subdistill-slurm-test}
export SLURM_CLUSTER_CTLD_PORT=${SLURM_CLUSTER_CTLD_PORT:-16827}
export SLURM_CLUSTER_SLURMD_PORT=${SLURM_CLUSTER_SLURMD_PORT:-16828}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/test-cluster.XXXXXX")
LOGS=$WORK/logs
mkdir -p "$LOGS"
LOCAL_ROOT=$WORK/local
SLURM_ROOT=$WORK/slurm
passed=0
failed=0
cluster_started=0
make_pid=""

note() { echo "test-cluster: $*"; }
pass() { passed=$((passed + 1)); echo "ok    $*"; }
# A failed check ends the test: later checks depend on earlier ones.
fail() {
    failed=$((failed + 1))
    echo "FAIL  $*"
    exit 1
}
show_log() { echo "---- last lines of $1"; tail -n "${2:-25}" "$1"; echo "----"; }

cleanup() {
    local rc=$?
    if [ -n "$make_pid" ] && kill -0 "$make_pid" 2>/dev/null; then
        kill -TERM "$make_pid" 2>/dev/null; kill -CONT "$make_pid" 2>/dev/null; wait "$make_pid" 2>/dev/null
    fi
    if [ $cluster_started = 1 ]; then
        bash "$HERE/slurm-cluster.sh" stop "$SLURM_CLUSTER_DIR" > "$LOGS/cluster-stop.log" 2>&1 \
            || { echo "warning: stopping the cluster failed:"; cat "$LOGS/cluster-stop.log"; }
    fi
    if [ $rc -eq 0 ] && [ "$KEEP" != 1 ]; then
        rm -rf "$WORK"
    else
        echo "test-cluster: work folder kept: $WORK (logs in $LOGS, cluster logs in $SLURM_CLUSTER_DIR/log)"
    fi
    [ $((passed + failed)) -gt 0 ] && echo "test-cluster: $passed passed, $failed failed"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ helpers
# Artifact checks in Python (numpy): compare two roots, or check that every
# final artifact in a root is complete.
cat > "$WORK/artifacts.py" <<'PY'
import io, json, os, re, subprocess, sys, zipfile
import numpy as np

# Keys whose values legitimately differ between two runs of the same stage.
TIMING = re.compile(r"(^|_)(created|time|times|seconds|elapsed|wall|duration|timestamp)($|_)", re.I)

def finals(root):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        for f in files:
            if f.startswith("."):
                continue  # temporary files of interrupted writes
            if (f.endswith(".npz") and not f.endswith(".ckpt.npz")) or f == "metrics.json":
                out.append(os.path.relpath(os.path.join(d, f), root))
    return sorted(out)

def normalise(x, roots):
    if isinstance(x, dict):
        return {k: normalise(v, roots) for k, v in x.items() if not TIMING.search(k)}
    if isinstance(x, list):
        return [normalise(v, roots) for v in x]
    if isinstance(x, str):
        for r in roots:
            x = x.replace(r, "<root>")
        return x
    return x

def read_npz(path):
    arrays, meta = {}, None
    with zipfile.ZipFile(path) as z:
        bad = z.testzip()
        if bad is not None:
            raise ValueError(f"{path}: corrupt zip entry {bad}")
        for name in z.namelist():
            data = z.read(name)
            if name.endswith(".npy"):
                arrays[name[:-4]] = np.load(io.BytesIO(data), allow_pickle=False)
            elif name == "meta.json":
                meta = json.loads(data)
    return arrays, meta

def tensors_differ(a, b):
    """Differences between two dicts of arrays, bit for bit (tol 0)."""
    out = []
    for k in sorted(set(a) | set(b)):
        if k not in a or k not in b:
            out.append(f"entry {k} only in {'second' if k in b else 'first'}")
            continue
        x, y = a[k], b[k]
        if x.dtype != y.dtype or x.shape != y.shape:
            out.append(f"entry {k}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}")
        elif x.tobytes() != y.tobytes():
            n = int(np.sum(x != y)) if x.dtype.kind in "fiub" else -1
            out.append(f"entry {k}: {n} of {x.size} values differ")
    return out

def meta_differ(ma, mb, roots):
    if (ma is None) != (mb is None):
        return ["meta.json present in only one"]
    if ma is None:
        return []
    out = []
    for key in sorted(set(ma) | set(mb)):
        # created: a time; inputs: digests of files whose meta carries times;
        # extra: run diagnostics (timings, images/s, cache keys over those
        # digests). The results are the tensors, compared bit for bit.
        if key in ("created", "inputs", "extra"):
            continue
        va, vb = normalise(ma.get(key), roots), normalise(mb.get(key), roots)
        if va != vb:
            out.append(f"meta.{key} differs: {json.dumps(va)[:200]} vs {json.dumps(vb)[:200]}")
    return out

def compare(ra, rb, tensors):
    roots = [os.path.abspath(ra), os.path.abspath(rb)]
    fa, fb = finals(ra), finals(rb)
    problems = []
    if not fa:
        print(f"no final artifacts under {ra}")
        return 1
    for f in sorted(set(fa) ^ set(fb)):
        problems.append(f"{f}: only under {'first' if f in fa else 'second'} root")
    common = [f for f in fa if f in fb]
    # `tensors diff` is used only once it has shown it can fail: it must call
    # two artifacts that numpy finds different, different.
    use_tool = False
    if tensors and os.access(tensors, os.X_OK):
        npzs = [f for f in common if f.endswith(".npz")]
        calib = None
        loaded = {f: read_npz(os.path.join(ra, f))[0] for f in npzs}
        for i in range(len(npzs)):
            for j in range(i + 1, len(npzs)):
                if set(loaded[npzs[i]]) == set(loaded[npzs[j]]) and tensors_differ(loaded[npzs[i]], loaded[npzs[j]]):
                    calib = (npzs[i], npzs[j]); break
            if calib: break
        if calib:
            same = subprocess.run([tensors, "diff", os.path.join(ra, calib[0]), os.path.join(ra, calib[0]), "--tol", "0"],
                                  capture_output=True).returncode
            diff = subprocess.run([tensors, "diff", os.path.join(ra, calib[0]), os.path.join(ra, calib[1]), "--tol", "0"],
                                  capture_output=True).returncode
            use_tool = same == 0 and diff != 0
            print(f"tensors diff {'used' if use_tool else 'NOT used (fails its calibration: same=%d, different=%d)' % (same, diff)}")
        else:
            print("tensors diff not used (no pair of artifacts to calibrate it on)")
    else:
        print("tensors diff not used (no tool); numpy only")
    n_npz = n_json = 0
    for f in common:
        pa, pb = os.path.join(ra, f), os.path.join(rb, f)
        try:
            if f.endswith(".npz"):
                n_npz += 1
                (ta, ma), (tb, mb) = read_npz(pa), read_npz(pb)
                d = tensors_differ(ta, tb) + meta_differ(ma, mb, roots)
                if use_tool:
                    r = subprocess.run([tensors, "diff", pa, pb, "--tol", "0"], capture_output=True, text=True)
                    if r.returncode != 0:
                        d.append("tensors diff: " + (r.stdout + r.stderr).strip()[:300])
            else:
                n_json += 1
                ja, jb = json.load(open(pa)), json.load(open(pb))
                d = [] if normalise(ja, roots) == normalise(jb, roots) else ["content differs"]
        except Exception as e:
            d = [f"unreadable: {e}"]
        for x in d:
            problems.append(f"{f}: {x}")
    for p in problems:
        print("  " + p)
    print(f"{n_npz} npz and {n_json} metrics.json compared, {len(problems)} difference(s)")
    return 1 if problems else 0

def complete(root):
    bad = 0
    fs = finals(root)
    for f in fs:
        p = os.path.join(root, f)
        try:
            if f.endswith(".npz"):
                read_npz(p)
            else:
                json.load(open(p))
        except Exception as e:
            print(f"  PARTIAL {f}: {e}")
            bad += 1
    temps = []
    for d, dirs, files in os.walk(root):
        temps += [os.path.relpath(os.path.join(d, x), root) for x in files if x.startswith(".") and ".tmp" in x]
    print(f"{len(fs)} final artifact(s) present, {bad} incomplete; {len(temps)} leftover temporary file(s)"
          + (": " + ", ".join(temps[:5]) if temps else ""))
    return 1 if bad else 0

if __name__ == "__main__":
    if sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None))
    sys.exit(complete(sys.argv[2]))
PY

# Highest job id recorded in the job-completion log so far.
last_job() {
    sacct -c -n -P -S 2020-01-01 -o jobid 2>/dev/null | awk -F'|' '$1+0 > m {m = $1+0} END {print m+0}'
}

# "id|name|state|workdir|cpus" of the jobs with id in ($1, $2].
jobs_between() {
    sacct -c -n -P -S 2020-01-01 -o jobid,jobname,state,workdir,alloccpus 2>/dev/null \
        | awk -F'|' -v lo="$1" -v hi="$2" '$1+0 > lo && $1+0 <= hi'
}

# Waits until no job is left in the queue (job records reach the
# completion log when the job ends, a moment after srun returns).
drain_queue() {
    local i
    for ((i = 0; i < 300; i++)); do
        [ -z "$(squeue -h -o %i 2>/dev/null)" ] && { sleep 0.3; return 0; }
        sleep 0.1
    done
    return 1
}

# Per-tool counts "tool n" of the stage commands make would launch.
expected_counts() {
    make -C "$REPO" -n PIPELINE="$PIPELINE" ARTIFACTS="$1" LAUNCH="$SRUN" 2>/dev/null \
        | awk -v pre="$SRUN $BIN/" 'index($0, pre) == 1 { t = substr($0, length(pre) + 1); sub(/ .*/, "", t); n[t]++ }
                                   END { for (t in n) print t, n[t] }' | sort
}

# Per-tool counts "tool n" of COMPLETED jobs in a jobs_between listing on stdin.
completed_counts() {
    awk -F'|' '$3 == "COMPLETED" { n[$2]++ } END { for (t in n) print t, n[t] }' | sort
}

# Adds two "tool n" listings.
add_counts() {
    cat "$1" "$2" | awk '{ n[$1] += $2 } END { for (t in n) print t, n[t] }' | sort
}

# The -c / --cpus-per-task value of the launcher, when it has one.
REQ_CPUS=$(sed -n 's/.*\(-c[ =]*\|--cpus-per-task[ =]\)\([0-9][0-9]*\).*/\2/p' <<< "$SRUN")

run_make() { # log, extra make args...
    local log=$1; shift
    ( cd "$REPO" && exec timeout "$RUN_TIMEOUT" make PIPELINE="$PIPELINE" "$@" ) > "$log" 2>&1
}

# ------------------------------------------------------------ 1. cluster
note "repository $REPO, pipeline $PIPELINE, work folder $WORK"
out=$(bash "$HERE/slurm-cluster.sh" start "$SLURM_CLUSTER_DIR" 2> "$LOGS/cluster-start.log")
rc=$?
case $rc in
    0) ;;
    77) echo "SKIP: not root ($(tail -1 "$LOGS/cluster-start.log"))"; exit 0 ;;
    78) echo "SKIP: packages unavailable ($(tail -1 "$LOGS/cluster-start.log"))"; exit 0 ;;
    *) cat "$LOGS/cluster-start.log"; cluster_started=1; fail "the throwaway cluster did not start (status $rc)" ;;
esac
cluster_started=1
eval "$out"
[ -n "${SLURM_CONF:-}" ] || fail "slurm-cluster.sh start printed no SLURM_CONF"
pass "cluster up ($(sinfo -h -N -o '%N %C CPUs(A/I/O/T)' 2>/dev/null)); SLURM_CONF=$SLURM_CONF"

# ------------------------------------------------------------ build
note "building the stage tools (make build)"
run_make "$LOGS/build.log" build || { show_log "$LOGS/build.log"; fail "make build failed"; }
missing=""
for t in $TOOLS; do [ -x "$REPO/$BIN/$t" ] || missing="$missing $t"; done
[ -z "$missing" ] || fail "stage tools missing after make build:$missing (not written yet?)"

# ------------------------------------------------------------ 2. two runs
note "local run: make PIPELINE=$PIPELINE ARTIFACTS=$LOCAL_ROOT"
t0=$SECONDS
run_make "$LOGS/local.log" ARTIFACTS="$LOCAL_ROOT" || { show_log "$LOGS/local.log"; fail "local make run failed"; }
pass "local run finished in $((SECONDS - t0)) s"

expected_counts "$SLURM_ROOT" > "$WORK/expected.txt"
[ -s "$WORK/expected.txt" ] || fail "make -n lists no stage command launched with '$SRUN'"
n_expected=$(awk '{s += $2} END {print s}' "$WORK/expected.txt")

note "Slurm run: make -j$JOBS PIPELINE=$PIPELINE LAUNCH='$SRUN' ARTIFACTS=$SLURM_ROOT"
j0=$(last_job)
t0=$SECONDS
# Sample the queue meanwhile: how many stage jobs ran side by side.
( while :; do squeue -h -t R -o %i 2>/dev/null | wc -l; sleep 0.2; done ) > "$WORK/concurrency.txt" &
sampler=$!
run_make "$LOGS/slurm.log" -j"$JOBS" LAUNCH="$SRUN" ARTIFACTS="$SLURM_ROOT"
rc=$?
kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
[ $rc -eq 0 ] || { show_log "$LOGS/slurm.log"; fail "Slurm make run failed (status $rc)"; }
pass "Slurm run finished in $((SECONDS - t0)) s (at most $(sort -n "$WORK/concurrency.txt" | tail -1) jobs running at once)"

# ------------------------------------------------------------ 3. sacct
drain_queue || fail "jobs still queued after make finished"
j1=$(last_job)
jobs_between "$j0" "$j1" > "$WORK/slurm-jobs.txt"
completed_counts < "$WORK/slurm-jobs.txt" > "$WORK/slurm-counts.txt"
bad_state=$(awk -F'|' '$3 != "COMPLETED"' "$WORK/slurm-jobs.txt")
bad_dir=$(awk -F'|' -v d="$REPO" '$4 != d' "$WORK/slurm-jobs.txt")
bad_cpus=""
[ -n "$REQ_CPUS" ] && bad_cpus=$(awk -F'|' -v c="$REQ_CPUS" '$5 != c' "$WORK/slurm-jobs.txt")
if ! diff -u "$WORK/expected.txt" "$WORK/slurm-counts.txt" > "$WORK/counts.diff"; then
    cat "$WORK/counts.diff"; fail "Slurm jobs per stage (sacct -c, +) differ from the DAG's stage commands (make -n, -)"
fi
[ -z "$bad_state" ] || { echo "$bad_state"; fail "Slurm jobs not COMPLETED"; }
[ -z "$bad_dir" ] || { echo "$bad_dir"; fail "Slurm jobs ran outside $REPO"; }
[ -z "$bad_cpus" ] || { echo "$bad_cpus"; fail "Slurm jobs with other than $REQ_CPUS CPU(s)"; }
pass "sacct: $n_expected stage commands ran as $n_expected Slurm jobs (jobs $((j0 + 1))..$j1), all COMPLETED${REQ_CPUS:+ with $REQ_CPUS CPU(s)}: $(tr '\n' ' ' < "$WORK/slurm-counts.txt")"

# ------------------------------------------------------------ 4. equality
TENSORS=""
[ -x "$REPO/$BIN/tensors" ] && TENSORS="$REPO/$BIN/tensors"
python3 "$WORK/artifacts.py" compare "$LOCAL_ROOT/$PIPELINE" "$SLURM_ROOT/$PIPELINE" $TENSORS > "$LOGS/compare1.log" 2>&1 \
    || { cat "$LOGS/compare1.log"; fail "final artifacts differ between the local and the Slurm run"; }
pass "local and Slurm artifacts identical ($(tail -1 "$LOGS/compare1.log"); $(head -1 "$LOGS/compare1.log"))"

# ------------------------------------------------------------ 5. cancellation
# Waits for the first job of a stage in CANCEL_STAGES whose process runs,
# freezes make (SIGSTOP, so that neither .DELETE_ON_ERROR nor a new stage
# touches the artifacts), cancels the job, waits until the job is over, and
# checks what is at the final paths at that moment: every artifact present
# must be complete. Then lets make go on. Prints "jobid name|command".
# Status 1: make ended before a stage was caught; 2: the check failed.
cancel_running_stage() {
    local id name p cmd i
    while kill -0 "$make_pid" 2>/dev/null; do
        while read -r id name; do
            case " $CANCEL_STAGES " in *" $name "*) ;; *) continue ;; esac
            for p in $(scontrol listpids "$id" 2>/dev/null | awk 'NR > 1 {print $1}'); do
                cmd=$(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null) || continue
                [ -n "$cmd" ] || continue
                sleep "$CANCEL_DELAY"
                kill -STOP "$make_pid"
                scancel "$id"
                for ((i = 0; i < 600; i++)); do
                    [ -z "$(squeue -h -j "$id" 2>/dev/null)" ] && break
                    sleep 0.1
                done
                python3 "$WORK/artifacts.py" complete "$SLURM_ROOT/$PIPELINE" > "$LOGS/complete-at-cancel.log" 2>&1
                local ok=$?
                kill -CONT "$make_pid"
                echo "$id $name|$cmd"
                [ $ok -eq 0 ] && return 0 || return 2
            done
        done < <(squeue -h -t R -o '%i %j' 2>/dev/null)
        sleep 0.05
    done
    return 1
}

cancelled=""
for attempt in 1 2 3; do
    run_make "$LOGS/clean.log" clean-"$PIPELINE" ARTIFACTS="$SLURM_ROOT" || { show_log "$LOGS/clean.log"; fail "make clean-$PIPELINE failed"; }
    [ ! -e "$SLURM_ROOT/$PIPELINE" ] || fail "make clean-$PIPELINE left $SLURM_ROOT/$PIPELINE"
    drain_queue
    j2=$(last_job)
    note "failure test (attempt $attempt): Slurm run, cancelling a running stage of: $CANCEL_STAGES"
    # make itself in the background (its pid is needed to freeze it).
    ( cd "$REPO" && exec make PIPELINE="$PIPELINE" -j"$JOBS" LAUNCH="$SRUN" ARTIFACTS="$SLURM_ROOT" ) \
        > "$LOGS/cancel.log" 2>&1 &
    make_pid=$!
    cancelled=$(cancel_running_stage)
    cancel_check=$?
    wait "$make_pid"
    cancel_rc=$?
    make_pid=""
    [ -n "$cancelled" ] && break
    note "make ended before a stage could be caught running"
done
[ -n "$cancelled" ] || fail "no stage of ($CANCEL_STAGES) was ever seen running: cannot test cancellation (set CLUSTER_TEST_CANCEL)"
cancel_cmd=${cancelled#*|}
cancelled=${cancelled%%|*}
cancel_id=${cancelled%% *}
cancel_name=${cancelled#* }
note "cancelled job $cancel_id: $cancel_cmd"
if [ $cancel_check -ne 0 ]; then
    cat "$LOGS/complete-at-cancel.log"
    fail "an incomplete artifact was at a final path when job $cancel_id ($cancel_name) had been cancelled"
fi
pass "right after the cancellation of job $cancel_id ($cancel_name): no partial artifact at a final path ($(tail -1 "$LOGS/complete-at-cancel.log"))"
drain_queue || fail "jobs still queued after the cancelled make ended"
j3=$(last_job)

[ $cancel_rc -ne 0 ] || { show_log "$LOGS/cancel.log"; fail "make succeeded although job $cancel_id ($cancel_name) was cancelled"; }
state=$(jobs_between "$j2" "$j3" | awk -F'|' -v j="$cancel_id" '$1 == j {print $3}')
[ "$state" = CANCELLED ] || fail "job $cancel_id ($cancel_name) is '$state' in sacct, not CANCELLED"
# Which target the cancelled stage was making: make's error line names it.
target=$(sed -n -E 's/^make(\[[0-9]+\])?: \*\*\* \[[^]]*:[0-9]+: (.*)\] Error .*/\2/p' "$LOGS/cancel.log" | head -1)
[ -n "$target" ] || { show_log "$LOGS/cancel.log"; fail "make's log names no failed target"; }
case $target in /*) ;; *) target=$REPO/$target ;; esac
[ ! -e "$target" ] || fail "the cancelled stage's target exists: $target"
python3 "$WORK/artifacts.py" complete "$SLURM_ROOT/$PIPELINE" > "$LOGS/complete.log" 2>&1 \
    || { cat "$LOGS/complete.log"; fail "an incomplete artifact is at a final path after make stopped"; }
pass "make failed (status $cancel_rc) on ${target#$WORK/}, which is absent; after make: $(tail -1 "$LOGS/complete.log")"

jobs_between "$j2" "$j3" | completed_counts > "$WORK/cancel-counts.txt"
note "rerun: make -j$JOBS LAUNCH='$SRUN' ARTIFACTS=$SLURM_ROOT"
run_make "$LOGS/rerun.log" -j"$JOBS" LAUNCH="$SRUN" ARTIFACTS="$SLURM_ROOT" || { show_log "$LOGS/rerun.log"; fail "rerun after the cancellation failed"; }
drain_queue || fail "jobs still queued after the rerun"
j4=$(last_job)
jobs_between "$j3" "$j4" > "$WORK/rerun-jobs.txt"
bad_state=$(awk -F'|' '$3 != "COMPLETED"' "$WORK/rerun-jobs.txt")
[ -z "$bad_state" ] || { echo "$bad_state"; fail "rerun jobs not COMPLETED"; }
completed_counts < "$WORK/rerun-jobs.txt" > "$WORK/rerun-counts.txt"
add_counts "$WORK/cancel-counts.txt" "$WORK/rerun-counts.txt" > "$WORK/total-counts.txt"
if ! diff -u "$WORK/expected.txt" "$WORK/total-counts.txt" > "$WORK/counts.diff"; then
    cat "$WORK/counts.diff"
    fail "stage jobs completed before the cancellation + in the rerun (+) differ from the DAG (-): a stage ran twice or not at all"
fi
grep -q "^$cancel_name " "$WORK/rerun-counts.txt" || fail "the rerun did not run the cancelled stage $cancel_name"
pass "rerun completed the $(awk '{s += $2} END {print s+0}' "$WORK/rerun-counts.txt") stage(s) left ($(tr '\n' ' ' < "$WORK/rerun-counts.txt")), none of the $(awk '{s += $2} END {print s+0}' "$WORK/cancel-counts.txt") finished before"

python3 "$WORK/artifacts.py" compare "$LOCAL_ROOT/$PIPELINE" "$SLURM_ROOT/$PIPELINE" $TENSORS > "$LOGS/compare2.log" 2>&1 \
    || { cat "$LOGS/compare2.log"; fail "after cancel + rerun, final artifacts differ from the local run"; }
pass "after cancel + rerun, artifacts identical to the local run ($(tail -1 "$LOGS/compare2.log"))"
exit 0
