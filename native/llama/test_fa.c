// Standalone harness for the nacrith flash-attention kernel (nacrith-fa.h, added to ggml-cpu by
// nacrith-fa.patch). Build and run (the Makefile extracts the header from the patch):
//   make -C native/llama test        (or by hand, with the header's directory on -I:)
//   gcc -O2 -mavx2 -mfma -mf16c -pthread -I<dir of nacrith-fa.h> test_fa.c -o test_fa -lm && ./test_fa
// Checks: (a) error against a double-precision softmax attention, (b) exact bit equality of every
// output row alone vs grouped / reordered / threaded / with differently padded and laid-out KV
// cells, (c) timing against a re-implementation of the stock one_chunk loop on a q8_0 cache.
// Exit status 0 when all checks pass.

#define _GNU_SOURCE
#include "nacrith-fa.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if !NFA_SIMD
#error "build with -mavx2 -mfma -mf16c (the harness checks the SIMD path)"
#endif

#define D   NFA_D
#define HKV 3    // KV heads (SmolLM2-135M)
#define G   3    // query heads per KV head
#define HQ  (HKV * G)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static inline uint64_t rnext(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static inline float runif(void) { return (float) ((rnext() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }
static inline float rnorm(void) {  // rough normal
    return (runif() + runif() + runif() + runif()) * 0.8660254f;
}

static inline uint16_t f2h(float f) { return (uint16_t) _cvtss_sh(f, 0); }
static inline float    h2f(uint16_t h) { return _cvtsh_ss(h); }
static inline uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t) (u >> 16);
}
static inline float bf2f(uint16_t h) { return nfa_bf16_to_float(h); }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);  // CPU time: the machine may be shared
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// ---------------------------------------------------------------------------------------------
// A "scene": logical cells 0..L-1 of one sequence (K, V per KV head), n_rows query rows; row r
// sees logical cells [0, vis[r]). A layout maps logical cell j to a physical cell phys[j] in a
// buffer of n_kv cells; every other physical cell is masked and filled with garbage (NaN, inf).

typedef struct {
    int     L, n_rows;
    float * k;    // [L][HKV][D]   values exactly representable in f16
    float * v;    // [L][HKV][D]   values exactly representable in bf16
    float * q;    // [n_rows][HQ][D]
    int *   vis;  // [n_rows]
    float   scale;
} scene;

typedef struct {
    int        n_kv;
    uint16_t * K;     // [n_kv][HKV][D] f16
    uint16_t * V;     // [n_kv][HKV][D] bf16
    uint16_t * mask;  // [n_rows][n_kv] f16 (0 or -inf)
} layout;

static void scene_make(scene * s, int L, int n_rows, int first_vis, float qamp) {
    s->L      = L;
    s->n_rows = n_rows;
    s->k      = malloc(sizeof(float) * L * HKV * D);
    s->v      = malloc(sizeof(float) * L * HKV * D);
    s->q      = malloc(sizeof(float) * n_rows * HQ * D);
    s->vis    = malloc(sizeof(int) * n_rows);
    s->scale  = 0.125f;
    for (int i = 0; i < L * HKV * D; i++) {
        s->k[i] = h2f(f2h(rnorm() * 1.5f));
        s->v[i] = bf2f(f2bf(rnorm()));
    }
    for (int r = 0; r < n_rows; r++) {
        const float amp = qamp * (0.25f + 1.75f * (float) (rnext() % 1000) / 1000.0f);
        for (int i = 0; i < HQ * D; i++) {
            s->q[(size_t) r * HQ * D + i] = rnorm() * amp;
        }
        s->vis[r] = first_vis + r;
        if (s->vis[r] > L) s->vis[r] = L;
    }
}

// phys: logical -> physical cell, strictly increasing (cell order is part of the contract)
static void layout_make(layout * l, const scene * s, const int * phys, int n_kv) {
    l->n_kv = n_kv;
    l->K    = malloc(sizeof(uint16_t) * n_kv * HKV * D);
    l->V    = malloc(sizeof(uint16_t) * n_kv * HKV * D);
    l->mask = malloc(sizeof(uint16_t) * s->n_rows * n_kv);
    const uint16_t garbage[4] = { 0x7e00u, 0x7c00u, 0xfc00u, 0x7bffu };  // nan, inf, -inf, 65504
    for (int i = 0; i < n_kv * HKV * D; i++) {
        l->K[i] = garbage[rnext() & 3];
        l->V[i] = (uint16_t) (garbage[rnext() & 3] == 0x7e00u ? 0x7fc0u : 0x7f80u);  // bf16 nan / inf
    }
    for (int i = 0; i < s->n_rows * n_kv; i++) l->mask[i] = 0xfc00u;
    for (int j = 0; j < s->L; j++) {
        const int p = phys[j];
        for (int i = 0; i < HKV * D; i++) {
            l->K[(size_t) p * HKV * D + i] = f2h(s->k[(size_t) j * HKV * D + i]);
            l->V[(size_t) p * HKV * D + i] = f2bf(s->v[(size_t) j * HKV * D + i]);
        }
        for (int r = 0; r < s->n_rows; r++) {
            if (j < s->vis[r]) l->mask[(size_t) r * n_kv + p] = 0;  // 0.0 in f16
        }
    }
}

static void layout_free(layout * l) {
    free(l->K);
    free(l->V);
    free(l->mask);
}

// one call of the kernel: rows [r0, r1) x heads of KV head hk in [h0, h1) (head index within group)
static void * g_scratch[4];
static size_t g_scratch_n[4];

static void run_item(const scene * s, const layout * l, float * out, int slot, const int * rows, int nrows, int hk,
                     int h0, int h1) {
    nfa_qv qv[256 * G];
    int    n = 0;
    for (int i = 0; i < nrows; i++) {
        const int r = rows[i];
        for (int h = h0; h < h1; h++) {
            const int hq = hk * G + h;
            qv[n].q      = s->q + ((size_t) r * HQ + hq) * D;
            qv[n].mask   = l->mask + (size_t) r * l->n_kv;
            qv[n].out    = out + ((size_t) r * HQ + hq) * D;
            n++;
        }
    }
    const size_t need = nfa_scratch_bytes(n, l->n_kv);
    if (g_scratch_n[slot] < need) {
        free(g_scratch[slot]);
        g_scratch[slot]   = malloc(need);
        g_scratch_n[slot] = need;
    }
    nfa_attend(qv, n, l->K + hk * D, sizeof(uint16_t) * HKV * D, l->V + hk * D, sizeof(uint16_t) * HKV * D, l->n_kv,
               s->scale, g_scratch[slot]);
}

// ------------------------------------------------------------------------- (a) accuracy
static double check_accuracy(const scene * s, const float * out) {
    double maxerr = 0;
    double * p    = malloc(sizeof(double) * s->L);
    for (int r = 0; r < s->n_rows; r++) {
        for (int hq = 0; hq < HQ; hq++) {
            const int     hk = hq / G;
            const float * q  = s->q + ((size_t) r * HQ + hq) * D;
            double        M  = -INFINITY, S = 0;
            for (int c = 0; c < s->vis[r]; c++) {
                double d = 0;
                for (int j = 0; j < D; j++) d += (double) q[j] * s->k[((size_t) c * HKV + hk) * D + j];
                p[c] = d * s->scale;
                if (p[c] > M) M = p[c];
            }
            for (int c = 0; c < s->vis[r]; c++) {
                p[c] = exp(p[c] - M);
                S += p[c];
            }
            for (int j = 0; j < D; j++) {
                double a = 0;
                for (int c = 0; c < s->vis[r]; c++) a += p[c] * s->v[((size_t) c * HKV + hk) * D + j];
                const double e = fabs(a / S - out[((size_t) r * HQ + hq) * D + j]);
                if (e > maxerr) maxerr = e;
            }
        }
    }
    free(p);
    return maxerr;
}

// ------------------------------------------------------------------------- (b) invariance
typedef struct {
    const scene *  s;
    const layout * l;
    float *        out;
    int            group_rows, split_heads;
    const int *    order;  // row order
    atomic_int *   next;
    int            slot;
} job;

static void * worker(void * arg) {
    job *     j       = (job *) arg;
    const int ngroups = (j->s->n_rows + j->group_rows - 1) / j->group_rows;
    const int hs      = j->split_heads ? G : 1;
    const int nitems  = ngroups * HKV * hs;
    for (int it = atomic_fetch_add(j->next, 1); it < nitems; it = atomic_fetch_add(j->next, 1)) {
        const int hsub = it % hs, hk = (it / hs) % HKV, g = it / (hs * HKV);
        const int r0 = g * j->group_rows;
        const int nr = j->s->n_rows - r0 < j->group_rows ? j->s->n_rows - r0 : j->group_rows;
        if (j->split_heads)
            run_item(j->s, j->l, j->out, j->slot, j->order + r0, nr, hk, hsub, hsub + 1);
        else
            run_item(j->s, j->l, j->out, j->slot, j->order + r0, nr, hk, 0, G);
    }
    return NULL;
}

static void run_all(const scene * s, const layout * l, float * out, int group_rows, int split_heads,
                    const int * order, int nthreads) {
    atomic_int next = 0;
    job        jobs[4];
    pthread_t  th[4];
    for (int t = 0; t < nthreads; t++) {
        jobs[t] = (job){ s, l, out, group_rows, split_heads, order, &next, t };
        if (t > 0) pthread_create(&th[t], NULL, worker, &jobs[t]);
    }
    worker(&jobs[0]);
    for (int t = 1; t < nthreads; t++) pthread_join(th[t], NULL);
}

// row r computed alone, one head per call, on a buffer holding exactly its visible cells
static void reference_alone(const scene * s, float * ref) {
    for (int r = 0; r < s->n_rows; r++) {
        scene one = *s;
        one.n_rows = 1;
        one.q      = s->q + (size_t) r * HQ * D;
        one.vis    = s->vis + r;
        int * phys = malloc(sizeof(int) * s->L);
        for (int j = 0; j < s->L; j++) phys[j] = j < s->vis[r] ? j : -1;
        // only the visible prefix is placed: n_kv = vis[r], no padding at all
        scene cut = one;
        cut.L     = s->vis[r];
        layout l;
        layout_make(&l, &cut, phys, s->vis[r]);
        int row0 = 0;
        for (int hk = 0; hk < HKV; hk++)
            for (int h = 0; h < G; h++) run_item(&one, &l, ref + (size_t) r * HQ * D - 0, 0, &row0, 1, hk, h, h + 1);
        layout_free(&l);
        free(phys);
    }
}

static int compare(const char * what, const scene * s, const float * ref, const float * out) {
    long bad = 0;
    for (size_t i = 0; i < (size_t) s->n_rows * HQ * D; i++) {
        if (memcmp(&ref[i], &out[i], 4) != 0) bad++;
    }
    printf("  %-58s %s", what, bad ? "DIFFER" : "bit-identical");
    if (bad) printf(" (%ld of %zu floats)", bad, (size_t) s->n_rows * HQ * D);
    printf("\n");
    return bad != 0;
}

// ------------------------------------------------------------------------- (c) stock-like q8_0
typedef struct {
    uint16_t d;
    int8_t   qs[32];
} block_q8_0;

static void quantize_q8_0(const float * x, block_q8_0 * y, int n) {
    for (int b = 0; b < n / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        const float d  = amax / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        y[b].d         = f2h(d);
        for (int j = 0; j < 32; j++) y[b].qs[j] = (int8_t) roundf(x[b * 32 + j] * id);
    }
}

static inline float hsum8(__m256 x) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    r        = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r        = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

// ggml_vec_dot_q8_0_q8_0, AVX2 (as in ggml-cpu/arch/x86/quants.c)
static inline float dot_q8_0(const block_q8_0 * x, const block_q8_0 * y, int nb) {
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const __m256  d  = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        const __m256i qx = _mm256_loadu_si256((const __m256i *) x[b].qs);
        const __m256i qy = _mm256_loadu_si256((const __m256i *) y[b].qs);
        const __m256i ax = _mm256_sign_epi8(qx, qx);
        const __m256i sy = _mm256_sign_epi8(qy, qx);
        const __m256i dot16 = _mm256_maddubs_epi16(ax, sy);
        const __m256i dot32 = _mm256_madd_epi16(dot16, _mm256_set1_epi16(1));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot32), acc);
    }
    return hsum8(acc);
}

// the stock one_chunk loop for one row/head on a q8_0 K and V cache
static void stock_q8_row(const float * q, const block_q8_0 * K, const block_q8_0 * V, size_t stride_blocks,
                         const uint16_t * mask, int n_kv, float scale, float * out) {
    block_q8_0 Qq[D / 32];
    float      V32[D], VKQ[D];
    quantize_q8_0(q, Qq, D);
    memset(VKQ, 0, sizeof VKQ);
    float S = 0, M = -INFINITY;
    for (int ic = 0; ic < n_kv; ic++) {
        const float mv = h2f(mask[ic]);
        if (mv == -INFINITY) continue;
        float s = dot_q8_0(K + ic * stride_blocks, Qq, D / 32) * scale + mv;
        const float Mold = M;
        float       ms = 1.0f, vs = 1.0f;
        if (s > M) {
            M  = s;
            ms = expf(Mold - M);
            for (int j = 0; j < D; j += 8)  // ggml_vec_scale_f32
                _mm256_storeu_ps(VKQ + j, _mm256_mul_ps(_mm256_loadu_ps(VKQ + j), _mm256_set1_ps(ms)));
        } else {
            vs = expf(s - M);
        }
        const block_q8_0 * vb = V + ic * stride_blocks;  // dequantize_row_q8_0 (scalar)
        for (int b = 0; b < D / 32; b++) {
            const float d = h2f(vb[b].d);
            for (int j = 0; j < 32; j++) V32[b * 32 + j] = vb[b].qs[j] * d;
        }
        const __m256 vv = _mm256_set1_ps(vs);  // ggml_vec_mad_f32
        for (int j = 0; j < D; j += 8)
            _mm256_storeu_ps(VKQ + j, _mm256_fmadd_ps(_mm256_loadu_ps(V32 + j), vv, _mm256_loadu_ps(VKQ + j)));
        S = S * ms + vs;
    }
    const float inv = S == 0.0f ? 0.0f : 1.0f / S;
    for (int j = 0; j < D; j++) out[j] = VKQ[j] * inv;
}

static volatile float sink;

// ns per core cycle right now (a chain of dependent integer adds: 1 cycle each on x86-64), so
// that timings on a shared or throttled machine can also be read in cycles
static double ns_per_cycle(void) {
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        uint64_t  x = 1;
        double    t = now();
        for (long i = 0; i < 20000000; i++) __asm__ volatile("add $1, %0" : "+r"(x));
        t = (now() - t) / 20000000 * 1e9;
        if (t < best) best = t;
    }
    return best;
}

static void timing(void) {
    const double cyc = ns_per_cycle();
    printf("\n(c) timing, one thread: ns (and core cycles, at %.2f GHz now) per visible cell per query head\n",
           1.0 / cyc);
    const int n_kv = 1024;
    scene     s;
    scene_make(&s, n_kv, 256, n_kv - 255, 1.0f);  // row r sees 769 + r cells: 256 rows end at 1024
    int * phys = malloc(sizeof(int) * n_kv);
    for (int j = 0; j < n_kv; j++) phys[j] = j;
    layout l;
    layout_make(&l, &s, phys, n_kv);
    float * out   = malloc(sizeof(float) * 256 * HQ * D);
    int *   order = malloc(sizeof(int) * 256);
    for (int r = 0; r < 256; r++) order[r] = r;
    double cells256 = 0;
    for (int r = 0; r < 256; r++) cells256 += s.vis[r];
    const double cells1 = s.vis[255];  // the last row: sees all 1024 cells

    // q8_0 copy of the same cache for the stock-like loop
    block_q8_0 * Kq = malloc(sizeof(block_q8_0) * n_kv * HKV * 2);
    block_q8_0 * Vq = malloc(sizeof(block_q8_0) * n_kv * HKV * 2);
    for (int c = 0; c < n_kv; c++)
        for (int hk = 0; hk < HKV; hk++) {
            quantize_q8_0(s.k + ((size_t) c * HKV + hk) * D, Kq + ((size_t) c * HKV + hk) * 2, D);
            quantize_q8_0(s.v + ((size_t) c * HKV + hk) * D, Vq + ((size_t) c * HKV + hk) * 2, D);
        }

    int    last = 255;
    double t, best;
    const int reps1 = 200, reps256 = 3;

#define BEST(expr, reps)                                      \
    best = 1e30;                                              \
    for (int rep = 0; rep < 3; rep++) {                       \
        t = now();                                            \
        for (int it = 0; it < (reps); it++) { expr; }         \
        t = (now() - t) / (reps);                             \
        if (t < best) best = t;                               \
    }

    // 1 row (the decoder): all 9 heads, one call per KV head (3 qvs share each K/V tile)
    BEST(for (int hk = 0; hk < HKV; hk++) run_item(&s, &l, out, 0, &last, 1, hk, 0, G), reps1);
    printf("  nacrith-fa, 1 row,   item = (row, KV head)    %6.2f ns %5.1f cyc (%.1f us per layer)\n",
           best * 1e9 / (cells1 * HQ), best * 1e9 / (cells1 * HQ) / cyc, best * 1e6);
    BEST(for (int hk = 0; hk < HKV; hk++) for (int h = 0; h < G; h++) run_item(&s, &l, out, 0, &last, 1, hk, h, h + 1),
         reps1);
    printf("  nacrith-fa, 1 row,   item = (row, query head) %6.2f ns %5.1f cyc (%.1f us per layer)\n",
           best * 1e9 / (cells1 * HQ), best * 1e9 / (cells1 * HQ) / cyc, best * 1e6);
    BEST(for (int r = 0; r < 256; r += 8) for (int hk = 0; hk < HKV; hk++) run_item(&s, &l, out, 0, order + r, 8, hk, 0, G),
         reps256);
    printf("  nacrith-fa, 256 rows, causal, 8 rows/item     %6.2f ns %5.1f cyc (%.2f ms per layer)\n",
           best * 1e9 / (cells256 * HQ), best * 1e9 / (cells256 * HQ) / cyc, best * 1e3);
    BEST(for (int r = 0; r < 256; r++) for (int hk = 0; hk < HKV; hk++) run_item(&s, &l, out, 0, order + r, 1, hk, 0, G),
         reps256);
    printf("  nacrith-fa, 256 rows, causal, 1 row/item      %6.2f ns %5.1f cyc (%.2f ms per layer)\n",
           best * 1e9 / (cells256 * HQ), best * 1e9 / (cells256 * HQ) / cyc, best * 1e3);

    const size_t sb = HKV * 2;  // blocks per cell
    BEST(for (int hq = 0; hq < HQ; hq++) stock_q8_row(s.q + ((size_t) 255 * HQ + hq) * D, Kq + (hq / G) * 2,
                                                       Vq + (hq / G) * 2, sb, l.mask + (size_t) 255 * n_kv, n_kv, s.scale,
                                                       out + hq * D),
         reps1 / 4);
    printf("  stock one_chunk on q8_0 (re-impl.), 1 row     %6.2f ns %5.1f cyc (%.1f us per layer)\n",
           best * 1e9 / (cells1 * HQ), best * 1e9 / (cells1 * HQ) / cyc, best * 1e6);
    BEST(for (int r = 0; r < 256; r++) for (int hq = 0; hq < HQ; hq++) stock_q8_row(s.q + ((size_t) r * HQ + hq) * D,
                                                                                     Kq + (hq / G) * 2, Vq + (hq / G) * 2, sb,
                                                                                     l.mask + (size_t) r * n_kv, n_kv,
                                                                                     s.scale, out + hq * D),
         1);
    printf("  stock one_chunk on q8_0 (re-impl.), 256 rows  %6.2f ns %5.1f cyc (%.2f ms per layer)\n",
           best * 1e9 / (cells256 * HQ), best * 1e9 / (cells256 * HQ) / cyc, best * 1e3);
    sink = out[0];
    layout_free(&l);
    free(phys);
    free(out);
    free(order);
    free(Kq);
    free(Vq);
}

int main(int argc, char ** argv) {
    int fail = 0;
    if (argc > 1 && !strcmp(argv[1], "time")) {  // timing only
        timing();
        return 0;
    }

    // ---- (a) accuracy
    printf("(a) accuracy against double-precision softmax attention (same f16 K / bf16 V values)\n");
    {
        const float amps[3] = { 0.5f, 2.0f, 6.0f };
        for (int a = 0; a < 3; a++) {
            scene s;
            scene_make(&s, 700, 64, 1, amps[a]);
            for (int r = 0; r < 64; r++) s.vis[r] = 1 + (int) (rnext() % 700);
            int * phys = malloc(sizeof(int) * 700);
            for (int j = 0; j < 700; j++) phys[j] = j;
            layout l;
            layout_make(&l, &s, phys, 768);
            float * out = malloc(sizeof(float) * 64 * HQ * D);
            int     order[64];
            for (int r = 0; r < 64; r++) order[r] = r;
            run_all(&s, &l, out, 8, 0, order, 1);
            const double e = check_accuracy(&s, out);
            printf("  |q| scale %.1f: max abs error %.3g (|v| <~ 4)\n", amps[a], e);
            if (!(e < 1e-4)) fail = 1;
            layout_free(&l);
            free(phys);
            free(out);
        }
    }

    // ---- (b) invariance
    printf("\n(b) invariance: 256 causal rows over a 300-cell prefix, 9 heads (3 KV heads)\n");
    {
        const int P = 300, R = 256, L = P + R;
        scene     s;
        scene_make(&s, L, R, P + 1, 2.0f);
        float * ref = malloc(sizeof(float) * R * HQ * D);
        float * out = malloc(sizeof(float) * R * HQ * D);
        int *   phys = malloc(sizeof(int) * L);
        int *   order = malloc(sizeof(int) * R);
        reference_alone(&s, ref);
        printf("  reference: each row alone, one head per call, n_kv = its visible cells\n");

        // layouts
        const char * lname[5] = { "contiguous, n_kv padded to 768", "contiguous, n_kv = 557 (odd)",
                                  "64 masked cells inserted at 150, n_kv 640",
                                  "80 masked cells scattered, n_kv 1024",
                                  "interleaved with another sequence, n_kv 1200" };
        for (int li = 0; li < 5; li++) {
            int n_kv;
            if (li == 0 || li == 1) {
                for (int j = 0; j < L; j++) phys[j] = j;
                n_kv = li == 0 ? 768 : L + 1;
            } else if (li == 2) {
                for (int j = 0; j < L; j++) phys[j] = j < 150 ? j : j + 64;
                n_kv = 640;
            } else if (li == 3) {
                int extra = 0, p = 0;
                for (int j = 0; j < L; j++) {
                    while (extra < 80 && rnext() % 7 == 0) { p++; extra++; }
                    phys[j] = p++;
                }
                n_kv = 1024;
            } else {
                int p = 0;
                for (int j = 0; j < L; j++) {
                    p += 1 + (int) (rnext() % 3);  // other sequence's cells in between (masked for us)
                    phys[j] = p;
                }
                n_kv = 1200;
                if (phys[L - 1] >= n_kv) { printf("layout overflow\n"); return 1; }
            }
            layout l;
            layout_make(&l, &s, phys, n_kv);
            printf(" layout: %s\n", lname[li]);
            const int groups[6] = { 1, 2, 7, 64, 256, 8 };
            for (int gi = 0; gi < 6; gi++) {
                for (int r = 0; r < R; r++) order[r] = r;
                char what[128];
                memset(out, 0xff, sizeof(float) * R * HQ * D);
                if (gi < 5) {
                    run_all(&s, &l, out, groups[gi], 0, order, 1);
                    snprintf(what, sizeof what, "%d rows x 3 heads per call, 1 thread", groups[gi]);
                } else {
                    for (int r = R - 1; r > 0; r--) {  // shuffled rows, 2 threads
                        int j = (int) (rnext() % (r + 1)), t2 = order[r];
                        order[r] = order[j];
                        order[j] = t2;
                    }
                    run_all(&s, &l, out, 8, 0, order, 2);
                    snprintf(what, sizeof what, "8 shuffled rows x 3 heads per call, 2 threads");
                }
                fail |= compare(what, &s, ref, out);
            }
            memset(out, 0xff, sizeof(float) * R * HQ * D);
            for (int r = 0; r < R; r++) order[r] = R - 1 - r;
            run_all(&s, &l, out, 5, 1, order, 2);
            fail |= compare("5 reversed rows x 1 head per call, 2 threads", &s, ref, out);
            layout_free(&l);
        }
        free(ref);
        free(out);
        free(phys);
        free(order);
    }

    timing();
    printf("\n%s\n", fail ? "FAILED" : "all checks passed");
    return fail;
}
