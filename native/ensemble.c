/*
 * The per-lane ensemble: token n-gram head, online log-space bias head, context mixer, confidence
 * skip. Included by nacrith_native.c (one translation unit, same deterministic-float rules:
 * IEEE binary64 +,-,*,/ only, no libm, no FMA, fixed loop order).
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

#define NG_M 8        /* (token, count) entries per n-gram context slot */
#define NG_MAXK 8     /* highest order */
#define NG_MAXC (NG_M * NG_MAXK)
#define NG_HALVE 60000u
#define NB_CONF 4     /* LLM confidence buckets of the mixer's weight-set selection */
#define N_SETS ((NG_MAXK + 1) * NB_CONF)
#define ESC_MAXLEN 16 /* bytes per escape group */

typedef struct {
    uint32_t tag;   /* 0: empty */
    uint32_t total; /* sum of cnt */
    int32_t tok[NG_M];
    uint32_t cnt[NG_M];
} NgSlot;

/* State that lanes may share (ensemble parameter "shared lanes"): updated by each lane in a
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

typedef struct {
    PyObject_HEAD
    /* parameters (all recorded in the stream) */
    Py_ssize_t n;      /* vocabulary size */
    int ng_order;      /* K, 0 = n-gram head off */
    int ng_bits;       /* log2 slots per order */
    double ng_kappa;   /* lambda = c / (c + kappa) */
    double bias_lr;    /* 0 = bias head off */
    int mixer;         /* 0 = linear (Hedge), 1 = geometric (gradient) */
    double mix_lr;
    double mix_init;   /* initial LLM weight */
    double skip_bits;  /* 0 = never skip */
    /* state */
    Heads own;         /* this lane's heads, unless shared from `owner` */
    Heads *h;          /* the heads in use (&own, or owner's) */
    PyObject *owner;   /* the LaneModel whose heads are shared (a new reference), or NULL */
    int32_t hist[NG_MAXK];
    Py_ssize_t n_hist;
    int set;           /* weight set of the last build */
    /* scratch: only used within one build / code / update call, so lanes sharing heads (coded one
       after the other) share the owner's too (~1 MB per lane less to keep in cache) */
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
} LaneModelObject;

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

static NgSlot *ng_slot(LaneModelObject *m, int order, uint64_t h) {
    size_t mask = ((size_t)1 << m->ng_bits) - 1;
    return &m->h->tables[(size_t)(order - 1) * (mask + 1) + (size_t)(h & mask)];
}

static uint32_t ng_tag(uint64_t h) { return (uint32_t)(h >> 32) | 1u; }

/* n-gram prediction for the next token: candidates, residual, top order, skip decision */
static void lm_prepare(LaneModelObject *m) {
    m->n_cand = 0;
    m->resid = 1.0;
    m->top = 0;
    m->skip = 0;
    int K = m->ng_order;
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
        double lam = c / (c + m->ng_kappa);
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
    if (m->skip_bits > 0.0 && m->n_cand > 0) {
        const double V = (double)m->n, u = m->resid / V, LOG2E = 1.4426950408889634;
        double H = 0.0;
        for (int k = 0; k < m->n_cand; k++) {
            double p = m->cand_s[k] + u;
            H -= p * det_log(p);
        }
        if (u > 0.0) H -= (V - (double)m->n_cand) * u * det_log(u);
        m->skip = H * LOG2E < m->skip_bits;
    }
    m->prepared = 1;
}

/* weight-set selection: highest matched n-gram order x bucket of the LLM's top probability */
static int conf_bucket(double pmax) {
    return pmax < 0.25 ? 0 : pmax < 0.5 ? 1 : pmax < 0.8 ? 2 : 3;
}

/* sum of W[i] * x_i, x_i = z_i + b_i - M, in four interleaved partial sums (like sum4) */
static double dot4(const double *W, const float *z, const double *bias, double M, Py_ssize_t n) {
#ifdef NACRITH_AVX2
    if (use_simd) return dot4_avx2(W, z, bias, M, n);
#endif
    double s[4] = {0.0, 0.0, 0.0, 0.0};
    for (Py_ssize_t i = 0; i < n; i++) {
        double x = ((double)z[i] + (bias ? bias[i] : 0.0)) - M;
        s[i & 3] += W[i] * x;
    }
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* b_i -= k e_i */
static void bias_update(double *b, const double *e, double k, Py_ssize_t n) {
#ifdef NACRITH_AVX2
    if (use_simd) { bias_update_avx2(b, e, k, n); return; }
#endif
    for (Py_ssize_t i = 0; i < n; i++) b[i] -= k * e[i];
}

/* Append the escape symbol (index n) to the final weights and quantise n + 1 symbols:
   P(escape) = (escapes + 1/32) / (tokens + 1) of this lane, at most 1/2. */
static int lm_quantise(LaneModelObject *m) {
    double *f = (double *)m->final;
    double P = ((double)m->h->n_esc + 0.03125) / ((double)m->h->n_tok + 1.0);
    if (P > 0.5) P = 0.5;
    double w = m->sumW * (P / (1.0 - P));
    f[m->n] = w;
    return quantise(f, m->sumW + w, m->n + 1, m->cdf);
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
static int lm_build(LaneModelObject *m, const float *logits) {
    const Py_ssize_t n = m->n;
    double *e = m->e, *W = m->W;
    m->had_llm = logits != NULL;
    if (!logits) {
        const double u = m->resid / (double)n;
        for (Py_ssize_t i = 0; i < n; i++) W[i] = u;
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
    if (m->ng_order == 0 && m->mixer == 0) { /* LLM (+ bias) only */
        m->sumW = ZL;
        m->final = e;
        return lm_quantise(m);
    }
    double *w = m->h->wts[m->set];
    const double r = m->resid; /* 1 when no n-gram context matched */
    if (m->mixer == 0) {
        if (m->n_cand == 0) {
            m->sumW = ZL;
            m->final = e;
            return lm_quantise(m);
        }
        /* p = (w_l + w_n r) L' + w_n s, scaled by Z_L */
        const double k = w[0] + w[1] * r;
        for (Py_ssize_t i = 0; i < n; i++) W[i] = k * e[i];
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

static void ng_update(LaneModelObject *m, int32_t y) {
    int K = m->ng_order;
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

static void lm_update(LaneModelObject *m, const float *logits, int32_t y) {
    const Py_ssize_t n = m->n;
    if (m->had_llm) {
        const double invZ = 1.0 / m->ZL;
        const double Ly = m->e[y] * invZ; /* L'(y) */
        const double r = m->resid;
        double sy = 0.0;
        for (int j = 0; j < m->n_cand; j++)
            if (m->cand[j] == y) sy = m->cand_s[j];
        const double Py = sy + r * Ly; /* P_ng(y) */
        double *w = m->h->wts[m->set];
        if (m->mixer == 0 && m->n_cand > 0) {
            /* Hedge: w_i *= P_i(y)^eta, normalise, keep each >= 1e-3 */
            double a = w[0] * det_exp_any(m->mix_lr * det_log(Ly > 1e-300 ? Ly : 1e-300));
            double c = w[1] * det_exp_any(m->mix_lr * det_log(Py > 1e-300 ? Py : 1e-300));
            double s = a + c;
            if (s > 0.0) { a /= s; c /= s; } else { a = c = 0.5; }
            if (a < 1e-3) { a = 1e-3; c = 1.0 - a; }
            if (c < 1e-3) { c = 1e-3; a = 1.0 - c; }
            w[0] = a;
            w[1] = c;
        } else if (m->mixer == 1) {
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
            double a = w[0] + m->mix_lr * ga, c = w[1] + m->mix_lr * gc;
            a = a < 0.0 ? 0.0 : a > 4.0 ? 4.0 : a;
            c = c < 0.0 ? 0.0 : c > 4.0 ? 4.0 : c;
            if (a + c < 0.05) a = 0.05 - c;
            w[0] = a;
            w[1] = c;
        }
        if (m->h->bias) {
            /* b -= lr (L' - onehot_y) */
            bias_update(m->h->bias, m->e, m->bias_lr * invZ, n);
            m->h->bias[y] += m->bias_lr;
        }
    }
    if (m->ng_order > 0) ng_update(m, y);
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
static void *zeroed_alloc(size_t bytes) { return PyMem_Calloc(bytes, 1); }
static void zeroed_free(void *p, size_t bytes) { PyMem_Free(p); }
#endif

/* ------------------------------------------------------------------ Python type */
static void LaneModel_dealloc(LaneModelObject *m) {
    zeroed_free(m->own.tables, m->own.tables_bytes);
    PyMem_Free(m->own.bias);
    if (!m->owner) { /* else the scratch is the owner's */
        PyMem_Free(m->e);
        PyMem_Free(m->W);
        PyMem_Free(m->cdf);
    }
    Py_XDECREF(m->owner);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

static PyObject *LaneModel_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"n_vocab", "ngram_order", "ngram_bits", "ngram_kappa", "bias_lr",
                             "mixer", "mix_lr", "mix_init", "skip_bits", "shared", NULL};
    Py_ssize_t n;
    int K = 0, bits = 16, mixer = 0;
    double kappa = 5.0, blr = 0.0, mlr = 0.5, minit = 0.85, skip = 0.0;
    PyObject *shared = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "n|iiddidddO", kwlist, &n, &K, &bits, &kappa, &blr,
                                     &mixer, &mlr, &minit, &skip, &shared))
        return NULL;
    if (shared != Py_None) {
        if (!PyObject_TypeCheck(shared, type)) {
            PyErr_SetString(PyExc_TypeError, "shared must be a LaneModel");
            return NULL;
        }
        LaneModelObject *o = (LaneModelObject *)shared;
        if (o->n != n || o->ng_order != K || o->ng_bits != bits || (o->h->bias != NULL) != (blr > 0.0)) {
            PyErr_SetString(PyExc_ValueError, "shared LaneModel has other parameters");
            return NULL;
        }
    }
    if (n < 2 || (size_t)n > MAX_SYMBOLS || K < 0 || K > NG_MAXK || bits < 4 || bits > 26 ||
        !(kappa > 0.0) || !(blr >= 0.0 && blr < 1.0) || mixer < 0 || mixer > 1 ||
        !(mlr >= 0.0 && mlr <= 10.0) || !(minit >= 0.0 && minit <= 1.0) || !(skip >= 0.0 && skip < 64.0)) {
        PyErr_SetString(PyExc_ValueError, "LaneModel parameter out of range");
        return NULL;
    }
    LaneModelObject *m = (LaneModelObject *)type->tp_alloc(type, 0);
    if (!m) return NULL;
    m->n = n;
    m->ng_order = K;
    m->ng_bits = bits;
    m->ng_kappa = kappa;
    m->bias_lr = blr;
    m->mixer = mixer;
    m->mix_lr = mlr;
    m->mix_init = minit;
    m->skip_bits = K > 0 ? skip : 0.0;
    if (shared != Py_None) {
        Py_INCREF(shared);
        m->owner = shared;
        m->h = ((LaneModelObject *)shared)->h;
    } else {
        m->h = &m->own;
        for (int i = 0; i < N_SETS; i++) {
            m->h->wts[i][0] = minit;
            m->h->wts[i][1] = 1.0 - minit;
        }
        if (K > 0) {
            m->h->tables_bytes = ((size_t)K << bits) * sizeof(NgSlot);
            m->h->tables = zeroed_alloc(m->h->tables_bytes);
            if (!m->h->tables) goto nomem;
        }
        if (blr > 0.0) {
            m->h->bias = PyMem_Calloc((size_t)n, sizeof(double));
            if (!m->h->bias) goto nomem;
        }
        for (int i = 0; i < ESC_MAXLEN; i++) m->h->len_cnt[i] = 1;
        for (int i = 0; i < 256; i++) m->h->byte_cnt[i] = 1;
    }
    if (m->owner) {
        LaneModelObject *o = (LaneModelObject *)m->owner;
        m->e = o->e;
        m->W = o->W;
        m->cdf = o->cdf;
    } else {
        m->e = PyMem_Malloc(sizeof(double) * (size_t)(n + 1));
        m->W = PyMem_Malloc(sizeof(double) * (size_t)(n + 1));
        m->cdf = PyMem_Malloc(sizeof(uint32_t) * (size_t)(n + 2));
        if (!m->e || !m->W || !m->cdf) goto nomem;
    }
    return (PyObject *)m;
nomem:
    Py_DECREF(m);
    return PyErr_NoMemory();
}

static PyObject *LaneModel_prepare(LaneModelObject *m, PyObject *Py_UNUSED(x)) {
    if (!m->prepared) lm_prepare(m);
    return PyBool_FromLong(m->skip);
}

/* Row of logits (float32[n]) or None -> pointer; returns -1 with exception on error. */
static int lm_logits_arg(LaneModelObject *m, PyObject *o, Py_buffer *b, const float **out) {
    *out = NULL;
    if (o == Py_None) return 0;
    Py_ssize_t rows, cols;
    if (check_logits(o, b, &rows, &cols)) return -1;
    if (rows != 1 || cols != m->n) {
        PyBuffer_Release(b);
        PyErr_Format(PyExc_ValueError, "need one row of %zd logits", m->n);
        return -1;
    }
    *out = (const float *)b->buf;
    return 1;
}

/* Code one escape group of k (1..16) raw bytes with the current step's distribution. */
static int lm_encode_escape(LaneModelObject *m, EncoderObject *enc, const float *L, const uint8_t *d, int k) {
    uint32_t cdf[257];
    if (lm_build(m, L)) return -1;
    if (enc_encode(enc, m->cdf, m->n + 1, m->n)) return -1;
    if (counts_cdf(m->h->len_cnt, ESC_MAXLEN, cdf) || enc_encode(enc, cdf, ESC_MAXLEN, k - 1)) return -1;
    counts_add(m->h->len_cnt, ESC_MAXLEN, k - 1, 16);
    for (int i = 0; i < k; i++) {
        if (counts_cdf(m->h->byte_cnt, 256, cdf) || enc_encode(enc, cdf, 256, d[i])) return -1;
        counts_add(m->h->byte_cnt, 256, d[i], 24);
    }
    m->h->n_esc++;
    return 0;
}

/* Escape groups for the raw bytes d[0..len) (split into groups of at most 16). */
static int lm_encode_raw(LaneModelObject *m, EncoderObject *enc, const float *L, const uint8_t *d, Py_ssize_t len) {
    for (Py_ssize_t a = 0; a < len; a += ESC_MAXLEN) {
        int k = (int)(len - a < ESC_MAXLEN ? len - a : ESC_MAXLEN);
        if (lm_encode_escape(m, enc, L, d + a, k)) return -1;
    }
    return 0;
}

/* One step: optional raw bytes (escaped), then token y. L: logits row or NULL (skip). */
static int lm_encode_step(LaneModelObject *m, EncoderObject *enc, const float *L, const uint8_t *raw,
                          Py_ssize_t raw_len, int32_t y) {
    if (!m->prepared) lm_prepare(m);
    if (m->skip) L = NULL; /* the decoder will not have the LLM here */
    else if (!L) {
        PyErr_SetString(PyExc_ValueError, "logits required: the n-gram head is not confident");
        return -1;
    }
    if (raw_len && lm_encode_raw(m, enc, L, raw, raw_len)) goto bad;
    if (lm_build(m, L) || enc_encode(enc, m->cdf, m->n + 1, y)) goto bad;
    m->n_skipped += m->skip;
    lm_update(m, L, y);
    return 0;
bad:
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad distribution");
    return -1;
}

/* encode(encoder, logits_or_None, symbol, raw=b"") */
static PyObject *LaneModel_encode(LaneModelObject *m, PyObject *args) {
    EncoderObject *enc;
    PyObject *lo;
    Py_ssize_t y;
    Py_buffer raw = {0};
    if (!PyArg_ParseTuple(args, "O!On|y*", &EncoderType, &enc, &lo, &y, &raw)) return NULL;
    PyObject *ret = NULL;
    Py_buffer b;
    const float *L;
    int got = 0;
    if (y < 0 || y >= m->n) {
        PyErr_Format(PyExc_ValueError, "symbol %zd out of range", y);
        goto done;
    }
    got = lm_logits_arg(m, lo, &b, &L);
    if (got < 0) { got = 0; goto done; }
    if (lm_encode_step(m, enc, L, raw.buf, raw.buf ? raw.len : 0, (int32_t)y)) goto done;
    ret = Py_None;
    Py_INCREF(ret);
done:
    if (got) PyBuffer_Release(&b);
    if (raw.obj) PyBuffer_Release(&raw);
    return ret;
}

/* encode_block(encoder, logits[k, n], symbols[k], escapes=None): encode() for each row; rows of
   skipped steps are ignored (the decoder will not compute them). escapes: list of (row, bytes)
   sorted by row: raw bytes coded (escaped) before that row's token. */
static PyObject *LaneModel_encode_block(LaneModelObject *m, PyObject *args) {
    EncoderObject *enc;
    PyObject *lo, *so, *esc = Py_None;
    if (!PyArg_ParseTuple(args, "O!OO|O", &EncoderType, &enc, &lo, &so, &esc)) return NULL;
    if (esc != Py_None && !PyList_Check(esc)) {
        PyErr_SetString(PyExc_TypeError, "escapes must be a list of (row, bytes)");
        return NULL;
    }
    Py_buffer lb, sb;
    Py_ssize_t rows, cols;
    if (check_logits(lo, &lb, &rows, &cols)) return NULL;
    if (get_buf(so, &sb, 0, 'i', 4, "symbols")) { PyBuffer_Release(&lb); return NULL; }
    PyObject *ret = NULL;
    Py_ssize_t ei = 0, ne = esc == Py_None ? 0 : PyList_GET_SIZE(esc);
    if (cols != m->n || sb.len / 4 != rows) {
        PyErr_SetString(PyExc_ValueError, "logits must be (k, n_vocab) with k symbols");
        goto done;
    }
    const float *L = (const float *)lb.buf;
    const int32_t *S = (const int32_t *)sb.buf;
    for (Py_ssize_t r = 0; r < rows; r++) {
        int32_t y = S[r];
        if (y < 0 || y >= m->n) { PyErr_Format(PyExc_ValueError, "symbol %d out of range", y); goto done; }
        const char *raw = NULL;
        Py_ssize_t raw_len = 0;
        if (ei < ne) {
            PyObject *item = PyList_GET_ITEM(esc, ei);
            Py_ssize_t row;
            PyObject *data;
            if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "nO!", &row, &PyBytes_Type, &data)) {
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "escape must be (row, bytes)");
                goto done;
            }
            if (row < r) { PyErr_SetString(PyExc_ValueError, "escapes not sorted by row"); goto done; }
            if (row == r) {
                raw = PyBytes_AS_STRING(data);
                raw_len = PyBytes_GET_SIZE(data);
                ei++;
            }
        }
        if (lm_encode_step(m, enc, L + r * cols, (const uint8_t *)raw, raw_len, y)) goto done;
    }
    if (ei != ne) { PyErr_SetString(PyExc_ValueError, "escape row out of range"); goto done; }
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&lb);
    PyBuffer_Release(&sb);
    return ret;
}

/* decode(decoder, logits_or_None) -> int token, or bytes (one escape group; call again for the
   rest of the step, with the same logits) */
static PyObject *LaneModel_decode(LaneModelObject *m, PyObject *args) {
    DecoderObject *dec;
    PyObject *lo;
    if (!PyArg_ParseTuple(args, "O!O", &DecoderType, &dec, &lo)) return NULL;
    Py_buffer b;
    const float *L;
    int got = lm_logits_arg(m, lo, &b, &L);
    if (got < 0) return NULL;
    PyObject *ret = NULL;
    if (!m->prepared) lm_prepare(m);
    if (m->skip) L = NULL;
    else if (!L) {
        PyErr_SetString(PyExc_ValueError, "logits required: the n-gram head is not confident");
        goto done;
    }
    if (lm_build(m, L)) { PyErr_SetString(PyExc_ValueError, "bad distribution"); goto done; }
    Py_ssize_t y = dec_decode(dec, m->cdf, m->n + 1);
    if (y == m->n) { /* escape group */
        uint32_t cdf[257];
        uint8_t out[ESC_MAXLEN];
        if (counts_cdf(m->h->len_cnt, ESC_MAXLEN, cdf)) { PyErr_SetString(PyExc_ValueError, "bad model"); goto done; }
        int k = (int)dec_decode(dec, cdf, ESC_MAXLEN) + 1;
        counts_add(m->h->len_cnt, ESC_MAXLEN, k - 1, 16);
        for (int i = 0; i < k; i++) {
            if (counts_cdf(m->h->byte_cnt, 256, cdf)) { PyErr_SetString(PyExc_ValueError, "bad model"); goto done; }
            out[i] = (uint8_t)dec_decode(dec, cdf, 256);
            counts_add(m->h->byte_cnt, 256, out[i], 24);
        }
        m->h->n_esc++;
        ret = PyBytes_FromStringAndSize((const char *)out, k);
        goto done;
    }
    m->n_skipped += m->skip;
    lm_update(m, L, (int32_t)y);
    ret = PyLong_FromSsize_t(y);
done:
    if (got) PyBuffer_Release(&b);
    return ret;
}

/* probs(logits_or_None) -> float64[n]: the distribution the coder would use now (no update) */
static PyObject *LaneModel_distribution(LaneModelObject *m, PyObject *lo) {
    Py_buffer b;
    const float *L;
    int got = lm_logits_arg(m, lo, &b, &L);
    if (got < 0) return NULL;
    if (!m->prepared) lm_prepare(m);
    if (m->skip) L = NULL;
    int rc = !m->skip && !L ? -2 : lm_build(m, L);
    if (got) PyBuffer_Release(&b);
    if (rc == -2) { PyErr_SetString(PyExc_ValueError, "logits required"); return NULL; }
    if (rc) { PyErr_SetString(PyExc_ValueError, "bad distribution"); return NULL; }
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof(double) * (m->n + 1));
    if (!out) return NULL;
    double *o = (double *)PyBytes_AS_STRING(out);
    const double S = m->sumW + m->final[m->n];
    for (Py_ssize_t i = 0; i <= m->n; i++) o[i] = m->final[i] / S;
    return out;
}

/* update(symbol) without coding (history warm-up / tests): n-gram and history only */
static PyObject *LaneModel_observe(LaneModelObject *m, PyObject *arg) {
    Py_ssize_t y = PyLong_AsSsize_t(arg);
    if (y == -1 && PyErr_Occurred()) return NULL;
    if (y < 0 || y >= m->n) return PyErr_Format(PyExc_ValueError, "symbol %zd out of range", y);
    if (!m->prepared) lm_prepare(m);
    m->had_llm = 0;
    lm_update(m, NULL, (int32_t)y);
    Py_RETURN_NONE;
}

static PyObject *LaneModel_get_tokens(LaneModelObject *m, void *c) { return PyLong_FromLongLong(m->n_tokens); }
static PyObject *LaneModel_get_skipped(LaneModelObject *m, void *c) { return PyLong_FromLongLong(m->n_skipped); }
static PyObject *LaneModel_get_weights(LaneModelObject *m, void *c) {
    int k = (m->ng_order + 1) * NB_CONF;
    PyObject *l = PyList_New(k);
    if (!l) return NULL;
    for (int i = 0; i < k; i++)
        PyList_SET_ITEM(l, i, Py_BuildValue("(dd)", m->h->wts[i][0], m->h->wts[i][1]));
    return l;
}
static PyObject *LaneModel_get_memory(LaneModelObject *m, void *c) {
    size_t b = ((size_t)m->ng_order << m->ng_bits) * sizeof(NgSlot) + (size_t)m->n * (16 + 4) +
               (m->h->bias ? (size_t)m->n * 8 : 0);
    return PyLong_FromSize_t(b);
}

static PyMethodDef LaneModel_methods[] = {
    {"prepare", (PyCFunction)LaneModel_prepare, METH_NOARGS,
     "prepare() -> bool\n\nPredict from the n-gram head for the next token; True when it is "
     "confident enough that the LLM is skipped for this token."},
    {"encode", (PyCFunction)LaneModel_encode, METH_VARARGS,
     "encode(encoder, logits, symbol, raw=b'')\n\nCode one step: the raw bytes (escaped, groups of "
     "at most 16), then the token; logits float32[n_vocab] (ignored, may be None, when prepare() "
     "says skip); then update every head."},
    {"encode_block", (PyCFunction)LaneModel_encode_block, METH_VARARGS,
     "encode_block(encoder, logits, symbols, escapes=None)\n\nencode() for every row of float32 "
     "logits (k, n_vocab) and int32 symbols (k,); escapes: list of (row, bytes) sorted by row."},
    {"decode", (PyCFunction)LaneModel_decode, METH_VARARGS,
     "decode(decoder, logits) -> int | bytes\n\nDecode one token (logits None when skipping) and "
     "update; an escape group comes back as bytes (call again, same logits, for the token)."},
    {"distribution", (PyCFunction)LaneModel_distribution, METH_O,
     "distribution(logits) -> bytes\n\nfloat64[n_vocab + 1] probabilities the coder would use now "
     "(the last: escape)."},
    {"observe", (PyCFunction)LaneModel_observe, METH_O,
     "observe(symbol)\n\nUpdate the n-gram head and history without coding."},
    {NULL}};

static PyGetSetDef LaneModel_getset[] = {
    {"tokens", (getter)LaneModel_get_tokens, NULL, "tokens coded", NULL},
    {"skipped", (getter)LaneModel_get_skipped, NULL, "tokens coded without the LLM", NULL},
    {"weights", (getter)LaneModel_get_weights, NULL, "mixer weights per weight set", NULL},
    {"memory", (getter)LaneModel_get_memory, NULL, "bytes of state", NULL},
    {NULL}};

static PyTypeObject LaneModelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nacrith._native.LaneModel",
    .tp_basicsize = sizeof(LaneModelObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "LaneModel(n_vocab, ngram_order=0, ngram_bits=16, ngram_kappa=5.0, bias_lr=0.0, "
              "mixer=0, mix_lr=0.5, mix_init=0.85, skip_bits=0.0, shared=None)\n\n"
              "Per-lane ensemble: n-gram head, bias head, mixer, confidence skip (native/ensemble.c). "
              "With shared=another LaneModel (same parameters) the n-gram tables, bias, mixer "
              "weights and escape models are shared; the history and the prediction stay per lane.",
    .tp_new = LaneModel_new,
    .tp_dealloc = (destructor)LaneModel_dealloc,
    .tp_methods = LaneModel_methods,
    .tp_getset = LaneModel_getset,
};
