// Sets OpenBLAS single-threaded when the process loads (see serial_blas.c).
#ifndef SERIAL_BLAS_H
#define SERIAL_BLAS_H

/// 1 once the load-time constructor has set OpenBLAS to one thread.
int nn_serial_blas_applied(void);

#endif
