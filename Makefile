# SubDistill study: `make` runs the default pipeline, `make test` the tests.
# Stage rules are generic; pipelines/<name>.mk files hold only parameters.

PIPELINE ?= quick
SWIFT    ?= swift
BIN      := .build/release
# Prefix for every stage command, e.g. LAUNCH='srun -n1 -c2' under Slurm.
LAUNCH   ?=

.PHONY: all setup build test bench help
.DEFAULT_GOAL := all

help:
	@echo "make            set-up, build, run the $(PIPELINE) pipeline"
	@echo "make test       set-up, build, run the tests"
	@echo "make bench      benchmarks (I/O and neural-network core)"
	@echo "make PIPELINE=name   choose pipelines/name.mk"

setup:
	@bash scripts/setup.sh

build: setup
	$(SWIFT) build -c release

all: build
	@echo "make: the pipeline stages are not all in place yet; built the tools that exist."

test: build
	$(SWIFT) test

bench: build
	$(BIN)/bench-io
	$(BIN)/bench-nn
