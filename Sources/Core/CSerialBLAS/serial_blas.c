// OpenBLAS single-threaded for the whole process, before main.
//
// Why: OpenBLAS's threaded sgemm/sgemv give different bits with different
// thread counts (and even single-threaded sgemm gives different bits for
// differently shaped calls), while the study needs results independent of
// the machine's and the scheduler's thread count. The NN layers therefore
// do all parallelism themselves over chunks fixed by the shapes (NN's
// Parallel.swift) and call OpenBLAS single-threaded. Setting it here, at
// load time, instead of at first use means no matrix product in a process
// that links NN ever runs threaded, whatever runs first (tests in parallel
// included), and nothing has to toggle the process-wide setting later.
#include "serial_blas.h"

void openblas_set_num_threads(int num_threads);

static int applied = 0;

__attribute__((constructor)) static void nn_serial_blas_init(void) {
    openblas_set_num_threads(1);
    applied = 1;
}

int nn_serial_blas_applied(void) { return applied; }
