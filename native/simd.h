/*
 * The loops over the vocabulary, each with a scalar reference and an AVX2 version chosen at run
 * time (simd.c; native/NOTES.md, "SIMD kernels"). Both give bit-identical results. Each call
 * covers a whole vocabulary (~49k elements), so calling them across translation units costs
 * nothing measurable.
 */
#ifndef NACRITH_SIMD_H
#define NACRITH_SIMD_H

#include <stddef.h>
#include <stdint.h>

/* Use AVX2 where the CPU has it (called once at import); returns whether it is in use. */
int simd_init(void);
/* Tests: on = 0 forces the scalar loops, on = 1 is simd_init(). Returns whether AVX2 is in use. */
int simd_set(int on);

/* out[i] = E(a * x_i + c) with x_i = z_i + bias_i - M (bias may be NULL), 0 where the argument
   is below the cutoff or NaN. */
void exp_pass(const float *z, const double *bias, double M, double a, double c, ptrdiff_t n, double *out);

/* Sum in a fixed order: four interleaved partial sums s_j = w[j] + w[j+4] + ... (in index
   order), then (s0 + s1) + (s2 + s3). Part of the format (codec/FORMAT.md). */
double sum4(const double *w, ptrdiff_t n);

/* max of z_i + b_i (b may be NULL): the first strict maximum, NaN ignored unless at index 0 */
double max_u(const float *z, const double *bias, ptrdiff_t n);

/* sum of W[i] * x_i, x_i = z_i + b_i - M, in four interleaved partial sums (like sum4) */
double dot4(const double *W, const float *z, const double *bias, double M, ptrdiff_t n);

/* b_i -= k e_i */
void bias_update(double *b, const double *e, double k, ptrdiff_t n);

/* counts f_i = 1 + floor(min(w_i * scale, spare)) (1 where w_i * scale is not > 0) into
   cdf[1..n]; returns their total, the largest count in *best_f and its first index in *best
   (*best_f must come in as 0) */
uint64_t quantise_counts(const double *w, double scale, uint32_t spare, ptrdiff_t n, uint32_t *cdf,
                         ptrdiff_t *best, uint32_t *best_f);

#endif
