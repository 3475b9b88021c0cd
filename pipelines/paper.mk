# The published sweep: six ρ, every method, 3 seeds, on both subtasks —
# gratings with the default student, stars (the hard variant) with 16-32-32.
SUBTASKS            := gratings stars
STUDENT_ARCH_stars  := c16,p,c32,p,c32,p,gap,fc5
RHOS                := 0 0.125 0.25 0.5 0.75 1
SEEDS               := 1 2 3
METHODS             := label-only kd kd+ce fitnet attention vid vkd spkd dkd \
                       rkd subdistill subdistill-pca subdistill-gradpca subdistill-prca subdistill-random
SUBSPACE_ARGS       := --bases prcaposdef,pca,gradpca,prca,random
DISTILL_ARGS        := --epochs 40
