# The default pipeline (`make`): the published effect on the default world in
# minutes. Gratings subtask, default 8-16-16 student, 2 seeds, three ρ.
RHOS          := 0 0.5 1
SEEDS         := 1 2
METHODS       := label-only kd fitnet attention subdistill subdistill-pca
SUBSPACE_ARGS := --bases prcaposdef,pca
DISTILL_ARGS  := --epochs 40
