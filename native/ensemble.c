/*
 * The per-lane ensemble (ensemble.h): token n-gram head, online log-space bias head, context
 * mixer, confidence skip. Same deterministic-float rules as the CDF (cdf.h): IEEE binary64
 * +,-,*,/ only, no libm, no FMA, fixed loop order; the vocabulary loops are simd.c's kernels.
 *
 * Per token (codec/FORMAT.md, "Ensemble"):
 *   prepare():  n-gram candidates from the lane's history, interpolated low to high with
 *               lambda_n = c / (c + kappa) (c = count of the order-n context), residual mass r;
 *               skip = (n-gram entropy with r spread uniformly) < skip_bits.
 *   build():    L'(x) = softmax(z_x + b_x) (bias head, Nacrith paper sec. "adaptive bias"),
 *               P_ng(x) = s(x) + r L'(x), then mixed:
 *                 linear:    p = w_l L' + w_n P_ng, Hedge updates w_i *= P_i(y)^eta
 *                 geometric: p ~ L'^a P_ng^c, online gradient on the code length
 *               with one weight set per "highest matched n-gram order" (PAQ-style selection).
 *               Without logits (skip): p = s + r / V.
 *   update(y):  bias b -= lr (L' - onehot_y), mixer weights, n-gram counts, history.
 */
#define _GNU_SOURCE 1 /* MAP_ANONYMOUS under -std=c99 (Python.h defines it in module.c) */
#include "ensemble.h"

#include <stdlib.h>
#include <string.h>

#include "cdf.h"
#include "simd.h"

#define NG_M 8        /* (token, count) entries per n-gram context slot */
#define NG_MAXK 8     /* highest order */
#define NG_MAXC (NG_M * NG_MAXK)
#define NG_HALVE 60000u
#define NB_CONF 4     /* LLM confidence buckets of the mixer's weight-set selection */
#define N_SETS ((NG_MAXK + 1) * NB_CONF)

typedef struct {
    uint32_t tag;   /* 0: empty */
    uint32_t total; /* sum of cnt */
    int32_t tok[NG_M];
    uint32_t cnt[NG_M];
} NgSlot;

/* State that lanes may share (the "shared heads" ensemble parameter): updated by each lane in a
   fixed order, so encoder and decoder see the same sequence of states. */
typedef struct {
    NgSlot *tables;    /* ng_order * 2^ng_bits */
    size_t tables_bytes;
    double *bias;      /* n, or NULL */
    double wts[N_SETS][2];
    long long n_esc, n_tok; /* escapes and tokens coded (escape probability) */
    uint32_t len_cnt[ESC_MAXLEN];
    uint32_t byte_cnt[256];
} Heads;

struct lane_model {
    lane_params p;     /* all recorded in the stream; skip_bits 0 without the n-gram head */
    /* state */
    Heads own;         /* this lane's heads, unless shared */
    Heads *h;          /* the heads in use (&own, or those of the model shared) */
    int shared;        /* h, e, W, cdf belong to another model */
    int32_t hist[NG_MAXK];
    ptrdiff_t n_hist;
    int set;           /* weight set of the last build */
    /* scratch: only used within one build / code / update call, so lanes sharing heads (coded one
       after the other) share those of the model shared too (~1 MB per lane less in cache) */
    double *e, *W;
    uint32_t *cdf;
    /* prepared prediction */
    int prepared, skip, top, n_cand;
    int32_t cand[NG_MAXC];
    double cand_s[NG_MAXC];
    double resid;
    uint64_t slot_hash[NG_MAXK];
    /* last build */
    int had_llm;
    double M, ZL, sumW;
    const double *final; /* the weights lm_build quantised (e or W), sum sumW */
    /* statistics */
    long long n_tokens, n_skipped; /* this lane's */
};

/* ---------------------------------------------------------------- deterministic log */
/* log(x) for finite x > 0: x = m 2^k with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(t),
   t = (m-1)/(m+1), |t| <= 0.1716, series to t^15 (error < 1e-13). */
static double det_log(double x) {
    if (!(x > 0.0)) return -1e300;
    if (x > 1.7e308) return 709.78;
    union { uint64_t u; double d; } v;
    v.d = x;
    int k = 0;
    if ((v.u >> 52) == 0) { /* subnormal: scale up by 2^64 */
        v.d = x * 18446744073709551616.0;
        k = -64;
    }
    k += (int)((v.u >> 52) & 0x7FF) - 1023;
    v.u = (v.u & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull; /* m in [1, 2) */
    double m = v.d;
    if (m > 1.4142135623730951) { m = m * 0.5; k += 1; }
    double t = (m - 1.0) / (m + 1.0);
    double t2 = t * t;
    double p = 1.0 / 15.0;
    p = p * t2 + 1.0 / 13.0;
    p = p * t2 + 1.0 / 11.0;
    p = p * t2 + 1.0 / 9.0;
    p = p * t2 + 1.0 / 7.0;
    p = p * t2 + 1.0 / 5.0;
    p = p * t2 + 1.0 / 3.0;
    p = p * t2 + 1.0;
    const double LN2_HI = 6.93147180369123816490e-01, LN2_LO = 1.90821492927058770002e-10;
    return (double)k * LN2_HI + (2.0 * t * p + (double)k * LN2_LO);
}

/* exp for any x <= ~700: det_exp on [-32, 0] after splitting off powers of e^-32 / e^32 */
static double det_exp_any(double x) {
    if (x != x) return 0.0;
    if (x < -700.0) return 0.0;
    if (x > 700.0) x = 700.0;
    double r = 1.0;
    const double E32 = 78962960182680.69, EM32 = 1.2664165549094176e-14; /* e^32, e^-32 */
    while (x > 0.0) { r *= E32; x -= 32.0; }
    while (x < EXP_CUTOFF) { r *= EM32; x += 32.0; }
    return r * det_exp(x);
}

static uint64_t ng_hash(const int32_t *toks, int n) {
    uint64_t h = 0x9E3779B97F4A7C15ull * (uint64_t)(n + 1);
    for (int i = 0; i < n; i++) {
        h ^= (uint64_t)(uint32_t)toks[i] + 1;
        h *= 0x100000001B3ull;
        h ^= h >> 29;
    }
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

static NgSlot *ng_slot(lane_model *m, int order, uint64_t h) {
    size_t mask = ((size_t)1 << m->p.ngram_bits) - 1;
    return &m->h->tables[(size_t)(order - 1) * (mask + 1) + (size_t)(h & mask)];
}

static uint32_t ng_tag(uint64_t h) { return (uint32_t)(h >> 32) | 1u; }

/* n-gram prediction for the next token: candidates, residual, top order, skip decision */
static void lm_prepare(lane_model *m) {
    m->n_cand = 0;
    m->resid = 1.0;
    m->top = 0;
    m->skip = 0;
    int K = m->p.ngram_order;
    if (K > m->n_hist) K = (int)m->n_hist;
    const int32_t *h_end = m->hist + (m->n_hist < NG_MAXK ? m->n_hist : NG_MAXK);
    /* orders from high to low: contribution lambda_n * (prod_{m>n} (1 - lambda_m)) * q_n */
    for (int n = K; n >= 1; n--) {
        uint64_t h = ng_hash(h_end - n, n);
        m->slot_hash[n - 1] = h;
        NgSlot *s = ng_slot(m, n, h);
        if (s->tag != ng_tag(h) || s->total == 0) continue;
        if (!m->top) m->top = n;
        double c = (double)s->total;
        double lam = c / (c + m->p.ngram_kappa);
        double f = m->resid * lam / c;
        for (int j = 0; j < NG_M; j++) {
            if (!s->cnt[j]) continue;
            int k;
            for (k = 0; k < m->n_cand && m->cand[k] != s->tok[j]; k++) {}
            if (k == m->n_cand) {
                m->cand[k] = s->tok[j];
                m->cand_s[k] = 0.0;
                m->n_cand++;
            }
            m->cand_s[k] += f * (double)s->cnt[j];
        }
        m->resid *= 1.0 - lam;
    }
    /* hashes of orders above the available history are computed at update time */
    if (m->p.skip_bits > 0.0 && m->n_cand > 0) {
        const double V = (double)m->p.n_vocab, u = m->resid / V, LOG2E = 1.4426950408889634;
        double H = 0.0;
        for (int k = 0; k < m->n_cand; k++) {
            double p = m->cand_s[k] + u;
            H -= p * det_log(p);
        }
        if (u > 0.0) H -= (V - (double)m->n_cand) * u * det_log(u);
        m->skip = H * LOG2E < m->p.skip_bits;
    }
    m->prepared = 1;
}

/* weight-set selection: highest matched n-gram order x bucket of the LLM's top probability */
static int conf_bucket(double pmax) {
    return pmax < 0.25 ? 0 : pmax < 0.5 ? 1 : pmax < 0.8 ? 2 : 3;
}

/* Append the escape symbol (index n) to the final weights and quantise n + 1 symbols:
   P(escape) = (escapes + 1/32) / (tokens + 1) of this lane, at most 1/2. */
static int lm_quantise(lane_model *m) {
    double *f = (double *)m->final;
    double P = ((double)m->h->n_esc + 0.03125) / ((double)m->h->n_tok + 1.0);
    if (P > 0.5) P = 0.5;
    double w = m->sumW * (P / (1.0 - P));
    f[m->p.n_vocab] = w;
    return quantise(f, m->sumW + w, m->p.n_vocab + 1, m->cdf);
}

/* CDF of a small adaptive frequency model (k counts) */
static int counts_cdf(const uint32_t *cnt, int k, uint32_t *cdf) {
    double w[256];
    double S = 0.0;
    for (int i = 0; i < k; i++) {
        w[i] = (double)cnt[i];
        S += w[i];
    }
    return quantise(w, S, k, cdf);
}

static void counts_add(uint32_t *cnt, int k, int i, uint32_t inc) {
    cnt[i] += inc;
    uint64_t total = 0;
    for (int j = 0; j < k; j++) total += cnt[j];
    if (total > (1u << 16))
        for (int j = 0; j < k; j++) cnt[j] = (cnt[j] + 1) >> 1;
}

/* Build the distribution (weights W, CDF) from the prepared state and optional logits. */
static int lm_build(lane_model *m, const float *logits) {
    const ptrdiff_t n = m->p.n_vocab;
    double *e = m->e, *W = m->W;
    m->had_llm = logits != NULL;
    if (!logits) {
        const double u = m->resid / (double)n;
        for (ptrdiff_t i = 0; i < n; i++) W[i] = u;
        for (int k = 0; k < m->n_cand; k++) W[m->cand[k]] += m->cand_s[k];
        m->sumW = sum4(W, n);
        m->final = W;
        return lm_quantise(m);
    }
    /* L'(x) = e_x / Z_L, e_x = exp(z_x + b_x - M) */
    const double M = max_u(logits, m->h->bias, n);
    exp_pass(logits, m->h->bias, M, 1.0, 0.0, n, e);
    const double ZL = sum4(e, n);
    m->M = M;
    m->ZL = ZL;
    m->set = m->top * NB_CONF + conf_bucket(1.0 / ZL);
    if (m->p.ngram_order == 0 && m->p.mixer == 0) { /* LLM (+ bias) only */
        m->sumW = ZL;
        m->final = e;
        return lm_quantise(m);
    }
    double *w = m->h->wts[m->set];
    const double r = m->resid; /* 1 when no n-gram context matched */
    if (m->p.mixer == 0) {
        if (m->n_cand == 0) {
            m->sumW = ZL;
            m->final = e;
            return lm_quantise(m);
        }
        /* p = (w_l + w_n r) L' + w_n s, scaled by Z_L */
        const double k = w[0] + w[1] * r;
        for (ptrdiff_t i = 0; i < n; i++) W[i] = k * e[i];
        for (int j = 0; j < m->n_cand; j++) W[m->cand[j]] += w[1] * m->cand_s[j] * ZL;
    } else {
        /* p ~ L'^a P_ng^c with P_ng = s + r L'. Up to the common factor Z_L^-(a+c):
             non-candidates: exp((a + c) x + c log r),   candidates: exp(a x) (s Z_L + r e)^c,
           computed relative to G, an upper bound of the largest log-weight. */
        const double a = w[0], c = w[1];
        const double clr = c * det_log(r);
        double lc[NG_MAXC];
        double G = clr;
        for (int j = 0; j < m->n_cand; j++) {
            int32_t x = m->cand[j];
            double lx = ((double)logits[x] + (m->h->bias ? m->h->bias[x] : 0.0)) - M;
            lc[j] = a * lx + c * det_log(m->cand_s[j] * ZL + r * e[x]);
            if (lc[j] > G) G = lc[j];
        }
        exp_pass(logits, m->h->bias, M, a + c, clr - G, n, W);
        for (int j = 0; j < m->n_cand; j++) {
            double y = lc[j] - G;
            W[m->cand[j]] = y < EXP_CUTOFF ? 0.0 : det_exp(y);
        }
    }
    m->sumW = sum4(W, n);
    m->final = W;
    return lm_quantise(m);
}

static void ng_update(lane_model *m, int32_t y) {
    int K = m->p.ngram_order;
    if (K > m->n_hist) K = (int)m->n_hist;
    const int32_t *h_end = m->hist + (m->n_hist < NG_MAXK ? m->n_hist : NG_MAXK);
    for (int n = 1; n <= K; n++) {
        uint64_t h = m->prepared ? m->slot_hash[n - 1] : ng_hash(h_end - n, n);
        NgSlot *s = ng_slot(m, n, h);
        uint32_t tag = ng_tag(h);
        if (s->tag != tag) { /* evict: the newest context takes the slot */
            memset(s, 0, sizeof(*s));
            s->tag = tag;
        }
        int j, free_j = -1, min_j = 0;
        for (j = 0; j < NG_M; j++) {
            if (s->cnt[j] && s->tok[j] == y) break;
            if (!s->cnt[j] && free_j < 0) free_j = j;
            if (s->cnt[j] < s->cnt[min_j]) min_j = j;
        }
        if (j == NG_M) {
            j = free_j >= 0 ? free_j : min_j;
            s->total -= s->cnt[j];
            s->tok[j] = y;
            s->cnt[j] = 0;
        }
        s->cnt[j]++;
        s->total++;
        if (s->total > NG_HALVE) {
            s->total = 0;
            for (int i = 0; i < NG_M; i++) {
                s->cnt[i] = (s->cnt[i] + 1) >> 1;
                s->total += s->cnt[i];
            }
        }
    }
    /* history: keep the last NG_MAXK tokens, most recent last */
    if (m->n_hist < NG_MAXK) {
        m->hist[m->n_hist++] = y;
    } else {
        memmove(m->hist, m->hist + 1, sizeof(int32_t) * (NG_MAXK - 1));
        m->hist[NG_MAXK - 1] = y;
        m->n_hist++;
    }
}

static void lm_update(lane_model *m, const float *logits, int32_t y) {
    const ptrdiff_t n = m->p.n_vocab;
    if (m->had_llm) {
        const double invZ = 1.0 / m->ZL;
        const double Ly = m->e[y] * invZ; /* L'(y) */
        const double r = m->resid;
        double sy = 0.0;
        for (int j = 0; j < m->n_cand; j++)
            if (m->cand[j] == y) sy = m->cand_s[j];
        const double Py = sy + r * Ly; /* P_ng(y) */
        double *w = m->h->wts[m->set];
        if (m->p.mixer == 0 && m->n_cand > 0) {
            /* Hedge: w_i *= P_i(y)^eta, normalise, keep each >= 1e-3 */
            double a = w[0] * det_exp_any(m->p.mix_lr * det_log(Ly > 1e-300 ? Ly : 1e-300));
            double c = w[1] * det_exp_any(m->p.mix_lr * det_log(Py > 1e-300 ? Py : 1e-300));
            double s = a + c;
            if (s > 0.0) { a /= s; c /= s; } else { a = c = 0.5; }
            if (a < 1e-3) { a = 1e-3; c = 1.0 - a; }
            if (c < 1e-3) { c = 1e-3; a = 1.0 - c; }
            w[0] = a;
            w[1] = c;
        } else if (m->p.mixer == 1) {
            /* gradient of log p(y):  d/da = log L'(y) - E_p[log L'],
                                      d/dc = log P_ng(y) - E_p[log P_ng]   */
            const double invS = 1.0 / m->sumW;
            const double logZ = det_log(m->ZL);
            const double ElogL = dot4(m->W, logits, m->h->bias, m->M, n) * invS - logZ;
            /* E_p[log P_ng] = sum_noncand p (log r + log L') + sum_cand p log P_ng */
            double pc = 0.0, ElogLc = 0.0, ElogPc = 0.0;
            for (int j = 0; j < m->n_cand; j++) {
                int32_t x = m->cand[j];
                double p = m->W[x] * invS;
                double lx = ((double)logits[x] + (m->h->bias ? m->h->bias[x] : 0.0)) - m->M - logZ;
                pc += p;
                ElogLc += p * lx;
                ElogPc += p * det_log(m->cand_s[j] + r * m->e[x] * invZ);
            }
            const double ElogP = (1.0 - pc) * det_log(r) + (ElogL - ElogLc) + ElogPc;
            const double ga = det_log(Ly > 1e-300 ? Ly : 1e-300) - ElogL;
            const double gc = det_log(Py > 1e-300 ? Py : 1e-300) - ElogP;
            double a = w[0] + m->p.mix_lr * ga, c = w[1] + m->p.mix_lr * gc;
            a = a < 0.0 ? 0.0 : a > 4.0 ? 4.0 : a;
            c = c < 0.0 ? 0.0 : c > 4.0 ? 4.0 : c;
            if (a + c < 0.05) a = 0.05 - c;
            w[0] = a;
            w[1] = c;
        }
        if (m->h->bias) {
            /* b -= lr (L' - onehot_y) */
            bias_update(m->h->bias, m->e, m->p.bias_lr * invZ, n);
            m->h->bias[y] += m->p.bias_lr;
        }
    }
    if (m->p.ngram_order > 0) ng_update(m, y);
    else if (m->n_hist < NG_MAXK) m->hist[m->n_hist++] = y;
    m->prepared = 0;
    m->n_tokens++;
    m->h->n_tok++;
}

/* ------------------------------------------------------------------ memory */
/* The n-gram tables (18.9 MB per frame with the defaults) come straight from mmap: their pages
   are zero and cost memory only once touched, and munmap returns them at once. Through malloc,
   glibc raises its mmap threshold after the first free, later tables come from the heap, calloc
   must then touch every page and freed tables fragment the heap: the RSS of a stream grew by
   ~19 MB every few frames (measured). */
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
static void *zeroed_alloc(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}
static void zeroed_free(void *p, size_t bytes) {
    if (p) munmap(p, bytes);
}
#else
static void *zeroed_alloc(size_t bytes) { return calloc(bytes, 1); }
static void zeroed_free(void *p, size_t bytes) { free(p); }
#endif

/* ------------------------------------------------------------------ lifetime */
int lane_params_valid(const lane_params *p) {
    return p->n_vocab >= 2 && (size_t)p->n_vocab <= MAX_SYMBOLS && p->ngram_order >= 0 &&
           p->ngram_order <= NG_MAXK && p->ngram_bits >= 4 && p->ngram_bits <= 26 && p->ngram_kappa > 0.0 &&
           p->bias_lr >= 0.0 && p->bias_lr < 1.0 && p->mixer >= 0 && p->mixer <= 1 && p->mix_lr >= 0.0 &&
           p->mix_lr <= 10.0 && p->mix_init >= 0.0 && p->mix_init <= 1.0 && p->skip_bits >= 0.0 &&
           p->skip_bits < 64.0;
}

int lane_can_share(const lane_model *m, const lane_params *p) {
    return m->p.n_vocab == p->n_vocab && m->p.ngram_order == p->ngram_order &&
           m->p.ngram_bits == p->ngram_bits && (m->h->bias != NULL) == (p->bias_lr > 0.0);
}

void lane_model_free(lane_model *m) {
    if (!m) return;
    zeroed_free(m->own.tables, m->own.tables_bytes);
    free(m->own.bias);
    if (!m->shared) { /* else the scratch is the other model's */
        free(m->e);
        free(m->W);
        free(m->cdf);
    }
    free(m);
}

lane_model *lane_model_new(const lane_params *p, lane_model *share) {
    lane_model *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    const ptrdiff_t n = p->n_vocab;
    const int K = p->ngram_order, bits = p->ngram_bits;
    m->p = *p;
    if (K == 0) m->p.skip_bits = 0.0; /* the skip needs the n-gram head */
    if (share) {
        m->shared = 1;
        m->h = share->h;
        m->e = share->e;
        m->W = share->W;
        m->cdf = share->cdf;
        return m;
    }
    m->h = &m->own;
    for (int i = 0; i < N_SETS; i++) {
        m->h->wts[i][0] = p->mix_init;
        m->h->wts[i][1] = 1.0 - p->mix_init;
    }
    if (K > 0) {
        m->h->tables_bytes = ((size_t)K << bits) * sizeof(NgSlot);
        m->h->tables = zeroed_alloc(m->h->tables_bytes);
        if (!m->h->tables) goto nomem;
    }
    if (p->bias_lr > 0.0) {
        m->h->bias = calloc((size_t)n, sizeof(double));
        if (!m->h->bias) goto nomem;
    }
    for (int i = 0; i < ESC_MAXLEN; i++) m->h->len_cnt[i] = 1;
    for (int i = 0; i < 256; i++) m->h->byte_cnt[i] = 1;
    m->e = malloc(sizeof(double) * (size_t)(n + 1));
    m->W = malloc(sizeof(double) * (size_t)(n + 1));
    m->cdf = malloc(sizeof(uint32_t) * (size_t)(n + 2));
    if (!m->e || !m->W || !m->cdf) goto nomem;
    return m;
nomem:
    lane_model_free(m);
    return NULL;
}

/* ------------------------------------------------------------------ one step */
int lane_prepare(lane_model *m) {
    if (!m->prepared) lm_prepare(m);
    return m->skip;
}

int lane_begin(lane_model *m, const float **logits) {
    if (lane_prepare(m)) *logits = NULL; /* the decoder will not have the LLM here */
    else if (!*logits) return -1;
    return 0;
}

const uint32_t *lane_token_cdf(lane_model *m, const float *logits) {
    return lm_build(m, logits) ? NULL : m->cdf;
}

void lane_token_update(lane_model *m, const float *logits, int32_t y) {
    m->n_skipped += m->skip;
    lm_update(m, logits, y);
}

int lane_escape_len_cdf(lane_model *m, uint32_t *cdf) { return counts_cdf(m->h->len_cnt, ESC_MAXLEN, cdf); }
void lane_escape_len_update(lane_model *m, int sym) { counts_add(m->h->len_cnt, ESC_MAXLEN, sym, 16); }
int lane_escape_byte_cdf(lane_model *m, uint32_t *cdf) { return counts_cdf(m->h->byte_cnt, 256, cdf); }
void lane_escape_byte_update(lane_model *m, int byte) { counts_add(m->h->byte_cnt, 256, byte, 24); }
void lane_escape_end(lane_model *m) { m->h->n_esc++; }

/* ------------------------------------------------------------------ tests and statistics */
int lane_distribution(lane_model *m, const float *logits, double *out) {
    if (lane_begin(m, &logits)) return -2;
    if (lm_build(m, logits)) return -1;
    const double S = m->sumW + m->final[m->p.n_vocab];
    for (ptrdiff_t i = 0; i <= m->p.n_vocab; i++) out[i] = m->final[i] / S;
    return 0;
}

void lane_observe(lane_model *m, int32_t y) {
    lane_prepare(m);
    m->had_llm = 0;
    lm_update(m, NULL, y);
}

ptrdiff_t lane_n_vocab(const lane_model *m) { return m->p.n_vocab; }
long long lane_tokens(const lane_model *m) { return m->n_tokens; }
long long lane_skipped(const lane_model *m) { return m->n_skipped; }
int lane_n_weight_sets(const lane_model *m) { return (m->p.ngram_order + 1) * NB_CONF; }
void lane_weights(const lane_model *m, int i, double *llm, double *ngram) {
    *llm = m->h->wts[i][0];
    *ngram = m->h->wts[i][1];
}
size_t lane_memory(const lane_model *m) {
    const size_t n = (size_t)m->p.n_vocab;
    return ((size_t)m->p.ngram_order << m->p.ngram_bits) * sizeof(NgSlot) + n * (16 + 4) + (m->h->bias ? n * 8 : 0);
}
