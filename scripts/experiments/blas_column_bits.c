// Diagnostic for the reproducibility note in the README: does OpenBLAS give every column of
// C = A·B the same bits when all of B's columns are the same? Prints, per column, which distinct
// result it got (0, 1, 2, …). Columns computed by different kernels get different last bits, so an
// image's output can depend on where its columns sit in a batched GEMM.
//   gcc -O2 scripts/experiments/blas_column_bits.c -o /tmp/blas_column_bits -lopenblas
//   /tmp/blas_column_bits 64 288 48; env -u OPENBLAS_CORETYPE /tmp/blas_column_bits 64 288 48
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s M K N (N <= 4096, at most 64 distinct results)\n", argv[0]); return 2; }
    int m = atoi(argv[1]), k = atoi(argv[2]), n = atoi(argv[3]);
    if (m < 1 || m > 512 || k < 1 || n < 1 || n > 4096) { fprintf(stderr, "M in 1...512, N in 1...4096\n"); return 2; }
    openblas_set_num_threads(1);
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n), *c = malloc(sizeof(float) * m * n);
    static float distinct[64][512];
    srand(1);
    for (int i = 0; i < m * k; i++) a[i] = rand() / (float)RAND_MAX - 0.5f;
    for (int r = 0; r < k; r++) { float v = rand() / (float)RAND_MAX - 0.5f; for (int j = 0; j < n; j++) b[r * n + j] = v; }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, a, k, b, n, 0, c, n);
    int kinds = 0;
    for (int j = 0; j < n; j++) {
        int found = -1;
        for (int d = 0; d < kinds && found < 0; d++) {
            int same = 1;
            for (int i = 0; i < m && same; i++) same = c[i * n + j] == distinct[d][i];
            if (same) found = d;
        }
        if (found < 0 && kinds < 64) { for (int i = 0; i < m; i++) distinct[kinds][i] = c[i * n + j]; found = kinds++; }
        putchar(found < 10 ? '0' + found : '+');
    }
    printf("\nM=%d K=%d N=%d: %d distinct column results (OpenBLAS kernels %s)\n", m, k, n, kinds, openblas_get_corename());
    return 0;
}
