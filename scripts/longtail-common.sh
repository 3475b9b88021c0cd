# Sourced by the scripts/longtail-*.sh measurements (not run on its own),
# after they set NAME (for messages), A (the pipeline's artifacts) and BIN:
# the input checks and the distill + evaluate pair with the longtail
# pipeline's student arguments (pipelines/longtail.mk).

# require_inputs TOOL...: exit 66 naming the first tool missing from $BIN,
# or the pipeline's artifacts when $A is not there.
require_inputs() {
    for tool in "$@"; do
        [[ -x $BIN/$tool ]] || { echo "$NAME: $BIN/$tool not built (make build)" >&2; exit 66; }
    done
    [[ -d $A ]] || { echo "$NAME: no pipeline artifacts at $A (make PIPELINE=longtail)" >&2; exit 66; }
}

# kd_student TEACHER DATA_DIR OUT_DIR SEED IMBALANCE METHOD [DISTILL_ARG...]:
# a KD student as the pipeline trains it (40 epochs, the pipeline's student
# architecture), then its evaluation on DATA_DIR's test splits; logs beside
# the outputs. Nothing to do when OUT_DIR/metrics.json exists.
kd_student() {
    local teacher=$1 data=$2 out=$3 seed=$4 imbalance=$5 method=$6
    shift 6
    [[ -f $out/metrics.json ]] && return 0
    echo "$NAME: $out" >&2
    mkdir -p "$out"
    "$BIN/distill" --teacher "$teacher" --train "$data/distill-train.npz" --val "$data/distill-val.npz" \
        --out "$out/student.npz" --method kd --arch c8,p,c16,p,c16,p,gap,fc5 --seed "$seed" --epochs 40 \
        "$@" > "$out/distill.log" 2>&1
    "$BIN/evaluate" --student "$out/student.npz" --teacher "$teacher" --data "$data" --out "$out/metrics.json" \
        --set pipeline="$NAME" --set subtask=gratings --set rho=0 --set seed="$seed" --set method="$method" \
        --set imbalance="$imbalance" > "$out/evaluate.log" 2>&1
}
