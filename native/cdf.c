/*
 * The CDF construction (native/NOTES.md, "Logits to CDF"): deterministic softmax weights, then
 * quantisation to an integer CDF of total 2^24 with every symbol >= 1 count. The vocabulary loops
 * are the kernels of simd.c (AVX2 or scalar, bit-identical).
 */
#include "cdf.h"

#include "simd.h"

double softmax_weights(const float *logits, ptrdiff_t n, double *w) {
    exp_pass(logits, NULL, max_u(logits, NULL, n), 1.0, 0.0, n, w);
    return sum4(w, n);
}

void softmax(const float *logits, ptrdiff_t n, double *out) {
    double inv = 1.0 / softmax_weights(logits, n, out);
    for (ptrdiff_t i = 0; i < n; i++) out[i] *= inv;
}

/*
 *   f_i = 1 + floor(w_i * (2^24 - n) / sum); the remainder (or excess, from rounding of the
 *   scale) goes to the first symbol with the largest count.
 * Worst-case cost vs the exact distribution: f_i / 2^24 >= p_i (1 - n / 2^24), i.e. at most
 * -log2(1 - n/2^24) bits per symbol (0.0042 bit for n = 49152).
 */
int quantise(const double *w, double sum, ptrdiff_t n, uint32_t *cdf) {
    if (n < 1 || (size_t)n >= CDF_TOTAL) return -1;
    const uint32_t spare = CDF_TOTAL - (uint32_t)n;
    uint64_t total = 0;
    ptrdiff_t best = 0;
    uint32_t best_f = 0;
    if (!(sum > 0.0) || sum != sum || sum > 1e300) {
        /* degenerate input (all zero / NaN / inf): uniform distribution, still deterministic */
        for (ptrdiff_t i = 0; i < n; i++) cdf[i + 1] = 1;
        total = (uint64_t)n;
    } else {
        const double scale = (double)spare / sum;
        total = quantise_counts(w, scale, spare, n, cdf, &best, &best_f);
    }
    if (total < CDF_TOTAL) {
        cdf[best + 1] += (uint32_t)(CDF_TOTAL - total);
    } else if (total > CDF_TOTAL) {
        uint64_t excess = total - CDF_TOTAL;
        /* the largest count is >= total / n > excess unless the input was pathological;
           remove what is possible from it, then from the following symbols in order */
        for (ptrdiff_t j = 0; j < n && excess; j++) {
            ptrdiff_t i = (best + j) % n;
            uint32_t can = cdf[i + 1] - 1;
            uint32_t take = can < excess ? can : (uint32_t)excess;
            cdf[i + 1] -= take;
            excess -= take;
        }
    }
    cdf[0] = 0;
    for (ptrdiff_t i = 0; i < n; i++) cdf[i + 1] += cdf[i];
    return cdf[n] == CDF_TOTAL ? 0 : -1;
}

int quantise_probs(const double *p, ptrdiff_t n, uint32_t *cdf) {
    double sum = 0.0;
    for (ptrdiff_t i = 0; i < n; i++) sum += (p[i] > 0.0) ? p[i] : 0.0; /* index order */
    /* negative / NaN weights count as 0 (quantise gives them the floor count) */
    return quantise(p, sum, n, cdf);
}
