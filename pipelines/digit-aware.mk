# Beyond the paper: a teacher that can read the shortcut. The teacher world
# gets a fifth family `glyph` (classes 20-24, labelled by the corner digit),
# so the teacher's features encode digits; the subtask is still gratings.
# Every basis method runs twice: with its subspace estimated on the
# contaminated distill-train (as published) and on distill-train-clean
# (the same images without the artifact): variants *-cleanbasis.
TEACHER_SYNTH_ARGS := --teacher-world digit-aware
TEACHER_ARCH       := c32,c32,p,c64,c64,p,c128,c128,p,gap,fc25
RHOS               := 0 0.5 1
SEEDS              := 1 2 3
BASIS_SPLITS       := distill-train-clean
SUBSPACE_ARGS      := --bases prcaposdef,pca,prca,gradpca
BASIS_METHODS      := subdistill subdistill-pca subdistill-prca subdistill-gradpca
METHODS            := label-only kd fitnet attention vkd $(BASIS_METHODS) $(addsuffix -cleanbasis,$(BASIS_METHODS))
$(foreach m,$(BASIS_METHODS),\
  $(eval METHOD_$m-cleanbasis := $m)\
  $(eval BASIS_SPLIT_$m-cleanbasis := distill-train-clean))
DISTILL_ARGS       := --epochs 40
