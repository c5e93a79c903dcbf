// OpenBLAS's cblas interface, plus the few LAPACK and threading entry points medsynth uses.
#include <cblas.h>

// Declared here because Debian ships no LAPACKE header with libopenblas-dev;
// the symbols live in libopenblas itself.
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
             double *w, double *work, const int *lwork, int *iwork, const int *liwork, int *info);
#include <malloc.h>
