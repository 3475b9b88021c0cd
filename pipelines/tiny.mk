# A few images per split and an epoch or two: the whole DAG in seconds.
# Used by the pipeline tests (scripts/test-pipeline.sh).
TEACHER_SYNTH_ARGS := --teacher-train-per-class 12 --teacher-val-per-class 4
TEACHER_ARGS       := --epochs 1 --batch 32
SYNTH_ARGS         := --distill-train-per-class 16 --distill-val-per-class 8 --test-per-class 8
RHOS               := 0 1
SEEDS              := 1
METHODS            := label-only kd subdistill
SUBSPACE_ARGS      := --positions 4
DISTILL_ARGS       := --epochs 1 --batch 16
# The tuning protocol end to end: kd's T grid and subdistill's λ_layer grid
# on tuning seed 101 at ρ = 0, and the tuned arm beside the defaults.
TUNED              := kd subdistill
