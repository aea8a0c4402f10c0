/*
 * The vocabulary-wide loops (max, exp, sums, dot product, bias update, CDF counts): the scalar
 * reference versions, and AVX2 versions chosen at run time when the CPU has AVX2 (`simd_init`).
 * Every AVX2 kernel computes, element by element, the same IEEE binary64 operations in the same
 * order as its scalar twin, so the results are bit-identical (tests/test_ensemble_simd.py compares
 * both on every path, `nacrith._native._testing.set_simd`):
 *
 *   - element-wise maps (exp, bias update, CDF counts) apply the same +, -, *, conversions to each
 *     element; no FMA (the "fma" target is not enabled and -ffp-contract=off is set);
 *   - the four-way sums keep the four scalar partial sums s_j = w[j] + w[j+4] + ... as the four
 *     lanes of one vector, added in index order, then (s0 + s1) + (s2 + s3);
 *   - maxima: each lane keeps its first strict maximum; lanes are combined in order with the same
 *     strict comparison, so a NaN is ignored unless it is element 0, as in the scalar loop;
 *   - integer totals and the largest count are exact whatever the order.
 */
#include "simd.h"

#include "cdf.h" /* det_exp, EXP_CUTOFF */

/* ------------------------------------------------------------------ scalar reference loops */
/* What each kernel computes: simd.h. These loops are the reference the AVX2 ones follow. */

/* element-wise, vectorisable */
static void exp_pass_scalar(const float *z, const double *bias, double M, double a, double c,
                            ptrdiff_t n, double *out) {
    if (bias) {
        for (ptrdiff_t i = 0; i < n; i++) {
            double y = a * (((double)z[i] + bias[i]) - M) + c;
            double v = det_exp(y < EXP_CUTOFF ? 0.0 : y);
            out[i] = (y >= EXP_CUTOFF) ? v : 0.0;
        }
    } else {
        for (ptrdiff_t i = 0; i < n; i++) {
            double y = a * ((double)z[i] - M) + c;
            double v = det_exp(y < EXP_CUTOFF ? 0.0 : y);
            out[i] = (y >= EXP_CUTOFF) ? v : 0.0;
        }
    }
}

static double sum4_scalar(const double *w, ptrdiff_t n) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += w[i];
        s1 += w[i + 1];
        s2 += w[i + 2];
        s3 += w[i + 3];
    }
    if (i < n) s0 += w[i++];
    if (i < n) s1 += w[i++];
    if (i < n) s2 += w[i++];
    return (s0 + s1) + (s2 + s3);
}

/* z_i + b_i, or z_i without a bias (no "+ 0.0", which would turn -0.0 into +0.0) */
#define U_AT(z, bias, i) ((bias) ? (double)(z)[i] + (bias)[i] : (double)(z)[i])

static double max_u_scalar(const float *z, const double *bias, ptrdiff_t n) {
    double M = U_AT(z, bias, 0);
    for (ptrdiff_t i = 1; i < n; i++) {
        double v = U_AT(z, bias, i);
        if (v > M) M = v;
    }
    return M;
}

static uint64_t quantise_counts_scalar(const double *w, double scale, uint32_t spare, ptrdiff_t n,
                                       uint32_t *cdf, ptrdiff_t *best, uint32_t *best_f) {
    uint64_t total = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        double v = w[i] * scale;
        uint32_t f;
        if (!(v > 0.0)) f = 1; /* also catches NaN */
        else if (v >= (double)spare) f = spare + 1;
        else f = 1 + (uint32_t)v;
        cdf[i + 1] = f;
        total += f;
        if (f > *best_f) { *best_f = f; *best = i; }
    }
    return total;
}

static double dot4_scalar(const double *W, const float *z, const double *bias, double M, ptrdiff_t n) {
    double s[4] = {0.0, 0.0, 0.0, 0.0};
    for (ptrdiff_t i = 0; i < n; i++) {
        double x = ((double)z[i] + (bias ? bias[i] : 0.0)) - M;
        s[i & 3] += W[i] * x;
    }
    return (s[0] + s[1]) + (s[2] + s[3]);
}

static void bias_update_scalar(double *b, const double *e, double k, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) b[i] -= k * e[i];
}

/* ------------------------------------------------------------------ AVX2 */
static int use_simd = 0; /* set by simd_init(), or by simd_set() (tests) */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define NACRITH_AVX2 1
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))

AVX2 static inline __m256d det_exp4(__m256d x) {
    const __m256d SHIFT = _mm256_set1_pd(6755399441055744.0);
    __m256d kd = _mm256_sub_pd(_mm256_add_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634)), SHIFT), SHIFT);
    __m256d r = _mm256_sub_pd(_mm256_sub_pd(x, _mm256_mul_pd(kd, _mm256_set1_pd(6.93147180369123816490e-01))),
                              _mm256_mul_pd(kd, _mm256_set1_pd(1.90821492927058770002e-10)));
    __m256d p = _mm256_set1_pd(1.0 / 3628800.0);
    p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0 / 362880.0));
    p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0 / 40320.0));
    p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0 / 5040.0));
    p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0 / 720.0));
    p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0 / 120.0));
    p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0 / 24.0));
    p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0 / 6.0));
    p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(0.5));
    p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0));
    p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(1.0));
    __m256d b = _mm256_add_pd(_mm256_add_pd(kd, _mm256_set1_pd(4503599627370496.0)), _mm256_set1_pd(1023.0));
    __m256d scale = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(b), 52));
    return _mm256_mul_pd(p, scale);
}

/* x_i = z_i + b_i - M (b may be NULL) for i..i+3 */
AVX2 static inline __m256d load_x4(const float *z, const double *bias, __m256d M, ptrdiff_t i) {
    __m256d x = _mm256_cvtps_pd(_mm_loadu_ps(z + i));
    if (bias) x = _mm256_add_pd(x, _mm256_loadu_pd(bias + i));
    return _mm256_sub_pd(x, M);
}

/* det_exp4 of EXP_NV vectors at once, step by step: the same operations on every lane as
   det_exp4, interleaved so that the Horner chains (each 22 dependent adds and multiplies) overlap
   instead of each waiting on its own latency */
#define EXP_NV 8 /* vectors per step of exp_pass_avx2 (the asm operand list below names 8) */
AVX2 static inline void det_exp4xN(__m256d *x) {
    const __m256d SHIFT = _mm256_set1_pd(6755399441055744.0);
    static const double C[11] = {1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0,
                                 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
    __m256d kd[EXP_NV], r[EXP_NV], p[EXP_NV];
    for (int j = 0; j < EXP_NV; j++) {
        kd[j] = _mm256_sub_pd(_mm256_add_pd(_mm256_mul_pd(x[j], _mm256_set1_pd(1.4426950408889634)), SHIFT), SHIFT);
        r[j] = _mm256_sub_pd(_mm256_sub_pd(x[j], _mm256_mul_pd(kd[j], _mm256_set1_pd(6.93147180369123816490e-01))),
                             _mm256_mul_pd(kd[j], _mm256_set1_pd(1.90821492927058770002e-10)));
        p[j] = _mm256_set1_pd(C[0]);
    }
    for (int k = 1; k < 11; k++) {
        const __m256d ck = _mm256_set1_pd(C[k]);
        for (int j = 0; j < EXP_NV; j++) p[j] = _mm256_add_pd(_mm256_mul_pd(p[j], r[j]), ck);
        /* keep the steps interleaved: GCC otherwise emits each chain whole, one after the other */
        __asm__("" : "+x"(p[0]), "+x"(p[1]), "+x"(p[2]), "+x"(p[3]), "+x"(p[4]), "+x"(p[5]), "+x"(p[6]), "+x"(p[7]));
    }
    for (int j = 0; j < EXP_NV; j++) {
        __m256d b = _mm256_add_pd(_mm256_add_pd(kd[j], _mm256_set1_pd(4503599627370496.0)), _mm256_set1_pd(1023.0));
        x[j] = _mm256_mul_pd(p[j], _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(b), 52)));
    }
}

AVX2 static void exp_pass_avx2(const float *z, const double *bias, double M, double a, double c,
                               ptrdiff_t n, double *out) {
    const __m256d vM = _mm256_set1_pd(M), va = _mm256_set1_pd(a), vc = _mm256_set1_pd(c);
    const __m256d cut = _mm256_set1_pd(EXP_CUTOFF), zero = _mm256_setzero_pd();
    ptrdiff_t i = 0;
    for (; i + 4 * EXP_NV <= n; i += 4 * EXP_NV) {
        __m256d y[EXP_NV], keep[EXP_NV];
        int any = 0;
        for (int j = 0; j < EXP_NV; j++) {
            y[j] = _mm256_add_pd(_mm256_mul_pd(va, load_x4(z, bias, vM, i + 4 * j)), vc);
            keep[j] = _mm256_cmp_pd(y[j], cut, _CMP_GE_OQ); /* false for NaN */
            any |= _mm256_movemask_pd(keep[j]);
        }
        if (!any) { /* all below the cutoff (or NaN): weight 0, as det_exp4 and the mask give */
            for (int j = 0; j < EXP_NV; j++) _mm256_storeu_pd(out + i + 4 * j, zero);
            continue;
        }
        for (int j = 0; j < EXP_NV; j++) y[j] = _mm256_blendv_pd(zero, y[j], keep[j]);
        det_exp4xN(y);
        for (int j = 0; j < EXP_NV; j++) _mm256_storeu_pd(out + i + 4 * j, _mm256_and_pd(y[j], keep[j]));
    }
    for (; i + 4 <= n; i += 4) {
        __m256d y = _mm256_add_pd(_mm256_mul_pd(va, load_x4(z, bias, vM, i)), vc);
        __m256d keep = _mm256_cmp_pd(y, cut, _CMP_GE_OQ); /* false for NaN */
        __m256d v = det_exp4(_mm256_blendv_pd(zero, y, keep));
        _mm256_storeu_pd(out + i, _mm256_and_pd(v, keep));
    }
    if (i < n) exp_pass_scalar(z + i, bias ? bias + i : NULL, M, a, c, n - i, out + i);
}

AVX2 static double sum4_avx2(const double *w, ptrdiff_t n) {
    __m256d acc = _mm256_setzero_pd();
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) acc = _mm256_add_pd(acc, _mm256_loadu_pd(w + i));
    double s[4];
    _mm256_storeu_pd(s, acc);
    if (i < n) s[0] += w[i++];
    if (i < n) s[1] += w[i++];
    if (i < n) s[2] += w[i++];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

AVX2 static double dot4_avx2(const double *W, const float *z, const double *bias, double M, ptrdiff_t n) {
    const __m256d vM = _mm256_set1_pd(M);
    __m256d acc = _mm256_setzero_pd();
    ptrdiff_t i = 0;
    const __m256d zero = _mm256_setzero_pd();
    for (; i + 4 <= n; i += 4) { /* as the scalar dot4: z + (b or 0.0) - M */
        __m256d x = _mm256_cvtps_pd(_mm_loadu_ps(z + i));
        x = _mm256_sub_pd(_mm256_add_pd(x, bias ? _mm256_loadu_pd(bias + i) : zero), vM);
        acc = _mm256_add_pd(acc, _mm256_mul_pd(_mm256_loadu_pd(W + i), x));
    }
    double s[4];
    _mm256_storeu_pd(s, acc);
    for (; i < n; i++) {
        double x = ((double)z[i] + (bias ? bias[i] : 0.0)) - M;
        s[i & 3] += W[i] * x;
    }
    return (s[0] + s[1]) + (s[2] + s[3]);
}

AVX2 static double max_u_avx2(const float *z, const double *bias, ptrdiff_t n) {
    double M = U_AT(z, bias, 0);
    __m256d acc = _mm256_set1_pd(M);
    ptrdiff_t i = 1;
    for (; i < n && (i & 3); i++) { /* elements 1..3 in scalar */
        double v = U_AT(z, bias, i);
        if (v > M) M = v;
    }
    for (; i + 4 <= n; i += 4) {
        __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(z + i));
        if (bias) v = _mm256_add_pd(v, _mm256_loadu_pd(bias + i));
        acc = _mm256_blendv_pd(acc, v, _mm256_cmp_pd(v, acc, _CMP_GT_OQ));
    }
    double s[4];
    _mm256_storeu_pd(s, acc);
    for (int k = 0; k < 4; k++)
        if (s[k] > M) M = s[k];
    for (; i < n; i++) {
        double v = U_AT(z, bias, i);
        if (v > M) M = v;
    }
    return M;
}

AVX2 static void bias_update_avx2(double *b, const double *e, double k, ptrdiff_t n) {
    const __m256d vk = _mm256_set1_pd(k);
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4)
        _mm256_storeu_pd(b + i, _mm256_sub_pd(_mm256_loadu_pd(b + i), _mm256_mul_pd(vk, _mm256_loadu_pd(e + i))));
    for (; i < n; i++) b[i] -= k * e[i];
}

/* counts f_i = 1 + floor(min(w_i * scale, spare)) (1 where w_i * scale is not > 0) into cdf[1..n];
   returns their total, the largest count in *best_f and its first index in *best */
AVX2 static uint64_t quantise_counts_avx2(const double *w, double scale, uint32_t spare, ptrdiff_t n,
                                          uint32_t *cdf, ptrdiff_t *best, uint32_t *best_f) {
    const __m256d vs = _mm256_set1_pd(scale), vsp = _mm256_set1_pd((double)spare), zero = _mm256_setzero_pd();
    const __m128i one = _mm_set1_epi32(1);
    __m256i tot = _mm256_setzero_si256();
    __m128i mx = _mm_setzero_si128();
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d v = _mm256_mul_pd(_mm256_loadu_pd(w + i), vs);
        v = _mm256_and_pd(v, _mm256_cmp_pd(v, zero, _CMP_GT_OQ)); /* 0 unless v > 0 (NaN too) */
        v = _mm256_min_pd(v, vsp);
        __m128i f = _mm_add_epi32(_mm256_cvttpd_epi32(v), one);
        _mm_storeu_si128((__m128i *)(cdf + 1 + i), f);
        tot = _mm256_add_epi64(tot, _mm256_cvtepu32_epi64(f));
        mx = _mm_max_epu32(mx, f);
    }
    uint64_t t4[4];
    uint32_t m4[4];
    _mm256_storeu_si256((__m256i *)t4, tot);
    _mm_storeu_si128((__m128i *)m4, mx);
    uint64_t total = t4[0] + t4[1] + t4[2] + t4[3];
    uint32_t bf = 0;
    for (int k = 0; k < 4; k++)
        if (m4[k] > bf) bf = m4[k];
    if (i < n) { /* the last n % 4 counts */
        ptrdiff_t bt = 0;
        uint32_t ft = 0;
        total += quantise_counts_scalar(w + i, scale, spare, n - i, cdf + i, &bt, &ft);
        if (ft > bf) bf = ft;
    }
    ptrdiff_t j = 0; /* first index of the largest count */
    const __m256i vb = _mm256_set1_epi32((int)bf);
    for (; j + 8 <= n; j += 8) {
        int msk = _mm256_movemask_ps(_mm256_castsi256_ps(
            _mm256_cmpeq_epi32(_mm256_loadu_si256((const __m256i *)(cdf + 1 + j)), vb)));
        if (msk) { j += __builtin_ctz((unsigned)msk); break; }
    }
    while (j < n && cdf[j + 1] != bf) j++;
    *best = j;
    *best_f = bf;
    return total;
}

int simd_init(void) {
    __builtin_cpu_init();
    use_simd = __builtin_cpu_supports("avx2") ? 1 : 0;
    return use_simd;
}
#else
int simd_init(void) { return use_simd = 0; }
#endif

/* ------------------------------------------------------------------ dispatch */
void exp_pass(const float *z, const double *bias, double M, double a, double c, ptrdiff_t n, double *out) {
#ifdef NACRITH_AVX2
    if (use_simd) { exp_pass_avx2(z, bias, M, a, c, n, out); return; }
#endif
    exp_pass_scalar(z, bias, M, a, c, n, out);
}

double sum4(const double *w, ptrdiff_t n) {
#ifdef NACRITH_AVX2
    if (use_simd) return sum4_avx2(w, n);
#endif
    return sum4_scalar(w, n);
}

double max_u(const float *z, const double *bias, ptrdiff_t n) {
#ifdef NACRITH_AVX2
    if (use_simd) return max_u_avx2(z, bias, n);
#endif
    return max_u_scalar(z, bias, n);
}

double dot4(const double *W, const float *z, const double *bias, double M, ptrdiff_t n) {
#ifdef NACRITH_AVX2
    if (use_simd) return dot4_avx2(W, z, bias, M, n);
#endif
    return dot4_scalar(W, z, bias, M, n);
}

void bias_update(double *b, const double *e, double k, ptrdiff_t n) {
#ifdef NACRITH_AVX2
    if (use_simd) { bias_update_avx2(b, e, k, n); return; }
#endif
    bias_update_scalar(b, e, k, n);
}

uint64_t quantise_counts(const double *w, double scale, uint32_t spare, ptrdiff_t n, uint32_t *cdf,
                         ptrdiff_t *best, uint32_t *best_f) {
#ifdef NACRITH_AVX2
    if (use_simd) return quantise_counts_avx2(w, scale, spare, n, cdf, best, best_f);
#endif
    return quantise_counts_scalar(w, scale, spare, n, cdf, best, best_f);
}

int simd_set(int on) {
    if (on) return simd_init(); /* on only where the CPU has it */
    use_simd = 0;
    return 0;
}
