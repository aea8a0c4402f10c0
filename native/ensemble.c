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
 *   match:      (match_min > 0) the longest earlier occurrence of the recent tokens in the frame
 *               (hash of the last match_min tokens -> last position, verified backwards, then
 *               extended while its predictions hit) predicts the token t that followed it; the
 *               mixed probability P of t becomes q = squash(a_k stretch(P) + c_k), the other
 *               tokens scaled by (1 - q) / (1 - P); (a_k, c_k) learnt online (log loss of "y = t")
 *               per context k = (match length bucket, last two hits).
 *   update(y):  bias b -= lr (L' - onehot_y), mixer weights, n-gram counts, history, match.
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
#define MM_NB 20        /* match length buckets */
#define MM_SETS (MM_NB * 4) /* x the last two predictions' hits */
#define MM_MAXVERIFY 64 /* longest length found by the backward check (then grown by hits) */
#define MM_MAXLEN 65535
#define MM_MAXLONG 32   /* the long context: min(4 match_min, 32) tokens */
#define MM_SMAX 16.0    /* |stretch(P)| bound */
#define MM_UMAX 20.0    /* |a stretch(P) + c| bound */

typedef struct {
    int32_t *tok; /* the tokens of one lane so far */
    size_t n, cap;
} MmBuf;

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
    /* match model: hash of the last match_min tokens -> (lane << 32) | position of the next token
       (0: empty), the token buffer of every lane using these heads, the boost weights */
    uint64_t *mm_table;
    size_t mm_table_bytes;
    MmBuf *mm_bufs;
    int mm_n_bufs, mm_cap_bufs;
    double mm_w[MM_SETS][2];
    uint32_t mm_n[MM_SETS]; /* updates of each weight pair (c's rate: max(match_lr, 1/(n + 2))) */

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
    /* match model: this lane's buffer, the current match (buffer mm_lane, position mm_ptr of the
       predicted token, length mm_len; 0 = none), the last two hits */
    int mm_id, mm_lane, mm_off;
    size_t mm_ptr, mm_len;
    unsigned mm_hh;
    int32_t mm_tok; /* prepared prediction, -1: none */
    int mm_ctx;
    int mm_done;    /* mm_predict ran in this step */
    int mm_used;    /* the last build boosted final[mm_tok] (restored by the update) */
    double mm_s, mm_q, mm_orig, mm_S0;

    /* statistics */
    long long n_tokens, n_skipped; /* this lane's */
    long long mm_pred, mm_hits;
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
    m->mm_tok = -1; /* the match model predicts at the build (mm_predict) */
    m->mm_used = 0;
    m->mm_done = 0;
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

/* Match model prediction: the token after the match, when its lane has coded it (with shared
   heads, lanes before this one in lane order have coded this step's token by now). */
static void mm_predict(lane_model *m) {
    m->mm_done = 1;
    m->mm_tok = -1;
    m->mm_used = 0;
    if (!m->mm_len) return;
    const MmBuf *b = &m->h->mm_bufs[m->mm_lane];
    if (m->mm_ptr >= b->n) return;
    const size_t L = m->mm_len;
    const int k = L < 16 ? (int)L : L < 32 ? 16 : L < 64 ? 17 : L < 128 ? 18 : 19;
    m->mm_tok = b->tok[m->mm_ptr];
    m->mm_ctx = k * 4 + (int)m->mm_hh;
}

/* Logistic boost of token t in the weights f (sum *S): its probability P becomes
   q = squash(w0 stretch(P) + w1), the others keep their proportions. 0 when not applied (t has
   all the mass); else *st = stretch(P), *q, *orig = f[t] before, and f[t], *S changed. */
static int boost_apply(double *f, double *S, int32_t t, const double *w, double *st, double *q, double *orig) {
    const double ft = f[t], rest = *S - ft;
    if (!(rest > 0.0)) return 0;
    double P = ft / *S;
    if (P < 1e-9) P = 1e-9;
    if (P > 1.0 - 1e-9) P = 1.0 - 1e-9;
    double x = det_log(P / (1.0 - P));
    x = x < -MM_SMAX ? -MM_SMAX : x > MM_SMAX ? MM_SMAX : x;
    double u = w[0] * x + w[1];
    u = u < -MM_UMAX ? -MM_UMAX : u > MM_UMAX ? MM_UMAX : u;
    const double qq = 1.0 / (1.0 + det_exp_any(-u));
    *st = x;
    *q = qq;
    *orig = ft;
    f[t] = rest * (qq / (1.0 - qq));
    *S = rest + f[t];
    return 1;
}

/* One gradient step of the log loss of the event (hit) on a boost's weights: w1 with rate
   max(lr, 1/(n + 2)) (n: its updates so far), w0 with lr. */
static void boost_learn(double *w, uint32_t *cnt, double lr, double st, double q, int hit) {
    const double g = q - (double)hit;
    double lc = 1.0 / ((double)*cnt + 2.0);
    if (lc < lr) lc = lr;
    if (*cnt < 1000000u) ++*cnt;
    const double a = w[0] - lr * g * st, c = w[1] - lc * g;
    w[0] = a < 0.0 ? 0.0 : a > 8.0 ? 8.0 : a;
    w[1] = c < -MM_UMAX ? -MM_UMAX : c > MM_UMAX ? MM_UMAX : c;
}

/* Match model boost of the final weights f (sum sumW), after mm_predict. Undone by mm_restore. */
static void mm_boost(lane_model *m, double *f) {
    if (m->mm_tok < 0) return;
    m->mm_S0 = m->sumW;
    m->mm_used = boost_apply(f, &m->sumW, m->mm_tok, m->h->mm_w[m->mm_ctx], &m->mm_s, &m->mm_q, &m->mm_orig);
}

static void mm_restore(lane_model *m) {
    if (!m->mm_used) return;
    ((double *)m->final)[m->mm_tok] = m->mm_orig;
    m->sumW = m->mm_S0; /* mm_used stays set: mm_update learns from mm_s, mm_q */
}

/* The match recorded in slot: taken when at least `need` tokens before it equal the last ones of
   buffer b (checked backwards, at most MM_MAXVERIFY). */
static void mm_find(lane_model *m, const MmBuf *b, size_t slot, int need) {
    const uint64_t e = m->h->mm_table[slot];
    if (!e) return;
    const int j = (int)(e >> 32);
    const size_t p = (size_t)(uint32_t)e, n = b->n;
    const int32_t *c = m->h->mm_bufs[j].tok;
    size_t l = 0;
    while (l < MM_MAXVERIFY && l < p && l < n && c[p - 1 - l] == b->tok[n - 1 - l]) l++;
    if (l >= (size_t)need) {
        m->mm_len = l;
        m->mm_lane = j;
        m->mm_ptr = p;
    }
}

/* Learn from token y (after lane_token_cdf): the boost weights, the hit history, then the match:
   extend it on a hit, else drop it and look the last match_min tokens up; record this position. */
static void mm_update(lane_model *m, int32_t y) {
    Heads *h = m->h;
    if (!m->mm_done) mm_predict(m); /* no build this step (lane_observe) */
    if (m->mm_tok >= 0) {
        const int hit = y == m->mm_tok;
        if (m->mm_used) {
            boost_learn(h->mm_w[m->mm_ctx], &h->mm_n[m->mm_ctx], m->p.match_lr, m->mm_s, m->mm_q, hit);
        }
        m->mm_hh = ((m->mm_hh << 1) | (unsigned)hit) & 3u;
        m->mm_pred++;
        m->mm_hits += hit;
    }
    if (m->mm_off) return;
    MmBuf *b = &h->mm_bufs[m->mm_id];
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 4096;
        int32_t *t = realloc(b->tok, cap * sizeof(int32_t));
        if (!t) { /* out of memory: this lane's match model stops (the frame checksum fails) */
            m->mm_off = 1;
            m->mm_len = 0;
            return;
        }
        b->tok = t;
        b->cap = cap;
    }
    b->tok[b->n++] = y;
    const size_t n = b->n;
    if (m->mm_len) {
        if (m->mm_tok >= 0 && y == m->mm_tok) {
            m->mm_ptr++;
            if (m->mm_len < MM_MAXLEN) m->mm_len++;
        } else {
            m->mm_len = 0;
        }
    }
    /* a long context (KL tokens) first, while the match is shorter: it finds the aligned copy
       where the short one finds the latest occurrence of a common phrase */
    const int K = m->p.match_min, KL = 4 * K < MM_MAXLONG ? 4 * K : MM_MAXLONG;
    if (n < (size_t)K) return;
    const uint64_t mask = ((uint64_t)1 << m->p.match_bits) - 1;
    const size_t ss = (size_t)(ng_hash(b->tok + n - K, K) & mask);
    const size_t sl = n >= (size_t)KL ? (size_t)(ng_hash(b->tok + n - KL, KL) & mask) : (size_t)-1;
    if (sl != (size_t)-1 && m->mm_len < (size_t)KL) mm_find(m, b, sl, KL);
    if (!m->mm_len) mm_find(m, b, ss, K);
    const uint64_t here = ((uint64_t)(uint32_t)m->mm_id << 32) | (uint64_t)n;
    if (n <= 0xFFFFFFFFu) {
        h->mm_table[ss] = here;
        if (sl != (size_t)-1) h->mm_table[sl] = here;
    }
}

/* Append the escape symbol (index n) to the final weights and quantise n + 1 symbols:
   P(escape) = (escapes + 1/32) / (tokens + 1) of this lane, at most 1/2. */
static int lm_quantise(lane_model *m) {
    double *f = (double *)m->final;
    m->mm_used = 0;
    if (m->p.match_min) mm_predict(m);
    if (m->p.match_min) mm_boost(m, f);
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
    mm_restore(m); /* the heads learn from the distribution before the match boost */
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
    if (m->p.match_min > 0) mm_update(m, y);

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
/* a token buffer for a new lane of heads h: its index, or -1 when out of memory */
static int mm_add_lane(Heads *h) {
    if (h->mm_n_bufs == h->mm_cap_bufs) {
        int cap = h->mm_cap_bufs ? 2 * h->mm_cap_bufs : 8;
        MmBuf *b = realloc(h->mm_bufs, (size_t)cap * sizeof(MmBuf));
        if (!b) return -1;
        h->mm_bufs = b;
        h->mm_cap_bufs = cap;
    }
    memset(&h->mm_bufs[h->mm_n_bufs], 0, sizeof(MmBuf));
    return h->mm_n_bufs++;
}

int lane_params_valid(const lane_params *p) {
    return p->n_vocab >= 2 && (size_t)p->n_vocab <= MAX_SYMBOLS && p->ngram_order >= 0 &&
           p->ngram_order <= NG_MAXK && p->ngram_bits >= 4 && p->ngram_bits <= 26 && p->ngram_kappa > 0.0 &&
           p->bias_lr >= 0.0 && p->bias_lr < 1.0 && p->mixer >= 0 && p->mixer <= 1 && p->mix_lr >= 0.0 &&
           p->mix_lr <= 10.0 && p->mix_init >= 0.0 && p->mix_init <= 1.0 && p->skip_bits >= 0.0 &&
           p->skip_bits < 64.0 && (p->match_min == 0 || (p->match_min >= 2 && p->match_min <= 32)) &&
           p->match_bits >= 8 && p->match_bits <= 26 && p->match_lr >= 0.0 && p->match_lr <= 1.0;
}

int lane_can_share(const lane_model *m, const lane_params *p) {
    return m->p.n_vocab == p->n_vocab && m->p.ngram_order == p->ngram_order &&
           m->p.ngram_bits == p->ngram_bits && (m->h->bias != NULL) == (p->bias_lr > 0.0) &&
           m->p.match_min == p->match_min && m->p.match_bits == p->match_bits && m->p.match_lr == p->match_lr;
}

void lane_model_free(lane_model *m) {
    if (!m) return;
    zeroed_free(m->own.tables, m->own.tables_bytes);
    free(m->own.bias);
    zeroed_free(m->own.mm_table, m->own.mm_table_bytes);
    for (int i = 0; i < m->own.mm_n_bufs; i++) free(m->own.mm_bufs[i].tok);
    free(m->own.mm_bufs);
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
    m->mm_tok = -1;
    if (share) {
        m->shared = 1;
        m->h = share->h;
        m->e = share->e;
        m->W = share->W;
        m->cdf = share->cdf;
        if (p->match_min > 0 && (m->mm_id = mm_add_lane(m->h)) < 0) {
            free(m);
            return NULL;
        }
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
    if (p->match_min > 0) {
        m->h->mm_table_bytes = sizeof(uint64_t) << p->match_bits;
        m->h->mm_table = zeroed_alloc(m->h->mm_table_bytes);
        if (!m->h->mm_table || (m->mm_id = mm_add_lane(m->h)) < 0) goto nomem;
        for (int i = 0; i < MM_SETS; i++) {
            m->h->mm_w[i][0] = 1.0;
            m->h->mm_w[i][1] = 0.0;
        }
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
    return ((size_t)m->p.ngram_order << m->p.ngram_bits) * sizeof(NgSlot) + n * (16 + 4) + (m->h->bias ? n * 8 : 0) +
           (m->p.match_min ? (sizeof(uint64_t) << m->p.match_bits) : 0);
}
void lane_match_stats(const lane_model *m, long long *predicted, long long *hits) {
    *predicted = m->mm_pred;
    *hits = m->mm_hits;
}
