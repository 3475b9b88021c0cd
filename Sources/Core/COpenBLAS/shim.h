// OpenBLAS: CBLAS for every matrix product, and the LAPACK routines the
// project calls (Fortran symbols, which libopenblas exports but whose
// prototypes Debian's libopenblas-dev does not ship in a C header).
#include <cblas.h>

void ssyevd_(const char *jobz, const char *uplo, const int *n, float *a,
             const int *lda, float *w, float *work, const int *lwork,
             int *iwork, const int *liwork, int *info);
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a,
             const int *lda, double *w, double *work, const int *lwork,
             int *iwork, const int *liwork, int *info);
void dgeqrf_(const int *m, const int *n, double *a, const int *lda,
             double *tau, double *work, const int *lwork, int *info);
void dorgqr_(const int *m, const int *n, const int *k, double *a,
             const int *lda, const double *tau, double *work,
             const int *lwork, int *info);
void sgesv_(const int *n, const int *nrhs, float *a, const int *lda,
            int *ipiv, float *b, const int *ldb, int *info);
void dgesv_(const int *n, const int *nrhs, double *a, const int *lda,
            int *ipiv, double *b, const int *ldb, int *info);
// Solve with an LU factorisation left by dgesv_/dgetrf_ (trans = 'N' or 'T');
// the orthogonal parameter's backward reuses its forward LU this way.
void dgetrs_(const char *trans, const int *n, const int *nrhs, const double *a,
             const int *lda, const int *ipiv, double *b, const int *ldb,
             int *info);
