/*
 * Logits / weights -> integer CDF with total 2^24, every symbol >= 1 count (native/NOTES.md,
 * "Logits to CDF"), and the fixed exponential it is built on. Part of the bitstream: the decoder
 * rebuilds every CDF from logits it computes itself, so the result must be identical on every
 * machine (IEEE binary64 +, -, *, / only, no libm, no FMA: -ffp-contract=off in setup.py).
 */
#ifndef NACRITH_CDF_H
#define NACRITH_CDF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PREC 24
#define CDF_TOTAL (1u << PREC)
#define MAX_SYMBOLS (1u << 22) /* far above any vocabulary; keeps n + 1 counts < 2^24 impossible */

/* Exponent clamp: e^-32 * 2^24 < 2e-7, so such a symbol always gets the floor count of 1. */
#define EXP_CUTOFF (-32.0)

/* ------------------------------------------------------------------------------------------ */
/* Deterministic exp(x) for x in [EXP_CUTOFF, 0]. Relative error < 2e-10.                     */
/* e^x = 2^k * e^r with k = x / ln2 rounded to nearest (ties to even, by adding and removing   */
/* 1.5 * 2^52), r = x - k ln2 in [-ln2/2, ln2/2] (ln2 split hi/lo as in fdlibm); e^r by its     */
/* Taylor series to degree 10 (|r|^11/11! < 2e-10) in Horner order; 2^k built from its bits.    */
/* Branch-free so loops over it vectorise (element-wise, so results do not depend on that).    */
/* Inline here because the vocabulary loops of simd.c and the ensemble's call it per element.  */
/* The AVX2 twin is det_exp4 in simd.c.                                                        */
/* ------------------------------------------------------------------------------------------ */
static inline double det_exp(double x) {
    const double LOG2E = 1.4426950408889634;
    const double LN2_HI = 6.93147180369123816490e-01;
    const double LN2_LO = 1.90821492927058770002e-10;
    const double SHIFT = 6755399441055744.0; /* 1.5 * 2^52 */
    double kd = (x * LOG2E + SHIFT) - SHIFT;
    double r = (x - kd * LN2_HI) - kd * LN2_LO;
    double p = 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* kd + 2^52 + 1023 holds k + 1023 in its low mantissa bits; shift them into the exponent */
    double b = kd + 4503599627370496.0 + 1023.0;
    uint64_t u;
    memcpy(&u, &b, 8);
    u <<= 52;
    double scale;
    memcpy(&scale, &u, 8);
    return p * scale;
}

/* Unnormalised softmax weights w[i] = E(l[i] - max l), 0 below the cutoff. Returns their sum
   (four interleaved partial sums, sum4 of simd.h). */
double softmax_weights(const float *logits, ptrdiff_t n, double *w);

/* Deterministic softmax: out[i] = w[i] / sum of softmax_weights(). */
void softmax(const float *logits, ptrdiff_t n, double *out);

/* Quantise non-negative weights w[0..n) (sum `sum`) into cdf[0..n]: cdf[0] = 0, cdf[n] = 2^24,
   cdf[i+1] - cdf[i] >= 1. Degenerate sums (0, NaN, inf) give the uniform CDF. Returns 0, or -1
   when n is out of range [1, 2^24). */
int quantise(const double *w, double sum, ptrdiff_t n, uint32_t *cdf);

/* cdf_from_probs: the sum of the positive weights in index order (negative / NaN count as 0),
   then quantise(). */
int quantise_probs(const double *p, ptrdiff_t n, uint32_t *cdf);

#endif
