/*
 * nacrith._native: the bit-exact core of nacrith.
 *
 *   - logits / probabilities -> integer CDF with total 2^24 (every symbol >= 1 count),
 *   - a 32-bit binary arithmetic coder (Witten-Neal-Cleary with pending bits) over such CDFs.
 *
 * Everything here must give the same result on every machine for the same input, because the
 * decoder rebuilds the CDF from logits it computes itself.  Rules followed:
 *   - only IEEE-754 double +, -, *, / and conversions (correctly rounded everywhere), no libm
 *     (exp is a fixed polynomial below), compiled with -ffp-contract=off so no FMA is formed;
 *   - sums are plain left-to-right loops (no reassociation without -ffast-math);
 *   - integer arithmetic for everything the coder touches.
 * Invariants of the coder are described in native/NOTES.md and asserted where used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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

/* out[i] = E(a * x_i + c) with x_i = z_i + bias_i - M (bias may be NULL), 0 where the argument
   is below the cutoff or NaN. Element-wise, vectorisable. */
static void exp_pass_scalar(const float *z, const double *bias, double M, double a, double c,
                            Py_ssize_t n, double *out) {
    if (bias) {
        for (Py_ssize_t i = 0; i < n; i++) {
            double y = a * (((double)z[i] + bias[i]) - M) + c;
            double v = det_exp(y < EXP_CUTOFF ? 0.0 : y);
            out[i] = (y >= EXP_CUTOFF) ? v : 0.0;
        }
    } else {
        for (Py_ssize_t i = 0; i < n; i++) {
            double y = a * ((double)z[i] - M) + c;
            double v = det_exp(y < EXP_CUTOFF ? 0.0 : y);
            out[i] = (y >= EXP_CUTOFF) ? v : 0.0;
        }
    }
}

/* Sum in a fixed order: four interleaved partial sums s_j = w[j] + w[j+4] + ... (in index
   order), then (s0 + s1) + (s2 + s3). Part of the format (codec/FORMAT.md). */
static double sum4_scalar(const double *w, Py_ssize_t n) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    Py_ssize_t i = 0;
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

/* max of z_i + b_i (b may be NULL): the first strict maximum, NaN ignored unless at index 0 */
static double max_u_scalar(const float *z, const double *bias, Py_ssize_t n) {
    double M = U_AT(z, bias, 0);
    for (Py_ssize_t i = 1; i < n; i++) {
        double v = U_AT(z, bias, i);
        if (v > M) M = v;
    }
    return M;
}

/* counts f_i of quantise() into cdf[1..n]; returns their total, the largest count in *best_f and
   its first index in *best */
static uint64_t quantise_counts_scalar(const double *w, double scale, uint32_t spare, Py_ssize_t n,
                                       uint32_t *cdf, Py_ssize_t *best, uint32_t *best_f) {
    uint64_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
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

#include "simd.c"

/* Unnormalised softmax weights w[i] = exp(l[i] - max l), 0 below the cutoff. Returns sum. */
static double softmax_weights(const float *logits, Py_ssize_t n, double *w) {
    exp_pass(logits, NULL, max_u(logits, NULL, n), 1.0, 0.0, n, w);
    return sum4(w, n);
}

/*
 * Quantise non-negative weights w (sum `sum` > 0) into an integer CDF cdf[0..n] with
 * cdf[0] = 0, cdf[n] = 2^24 and cdf[i+1] - cdf[i] >= 1:
 *   f_i = 1 + floor(w_i * (2^24 - n) / sum); the remainder (or excess, from rounding of the
 *   scale) goes to the first symbol with the largest count.
 * Worst-case cost vs the exact distribution: f_i / 2^24 >= p_i (1 - n / 2^24), i.e. at most
 * -log2(1 - n/2^24) bits per symbol (0.0042 bit for n = 49152).
 */
static int quantise(const double *w, double sum, Py_ssize_t n, uint32_t *cdf) {
    if (n < 1 || (size_t)n >= CDF_TOTAL) return -1;
    const uint32_t spare = CDF_TOTAL - (uint32_t)n;
    uint64_t total = 0;
    Py_ssize_t best = 0;
    uint32_t best_f = 0;
    if (!(sum > 0.0) || sum != sum || sum > 1e300) {
        /* degenerate input (all zero / NaN / inf): uniform distribution, still deterministic */
        for (Py_ssize_t i = 0; i < n; i++) cdf[i + 1] = 1;
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
        for (Py_ssize_t j = 0; j < n && excess; j++) {
            Py_ssize_t i = (best + j) % n;
            uint32_t can = cdf[i + 1] - 1;
            uint32_t take = can < excess ? can : (uint32_t)excess;
            cdf[i + 1] -= take;
            excess -= take;
        }
    }
    cdf[0] = 0;
    for (Py_ssize_t i = 0; i < n; i++) cdf[i + 1] += cdf[i];
    return cdf[n] == CDF_TOTAL ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------ */
/* 32-bit arithmetic coder                                                                     */
/* ------------------------------------------------------------------------------------------ */
#define HALF 0x80000000ull
#define QUARTER 0x40000000ull
#define TOPMASK 0xFFFFFFFFull

typedef struct {
    PyObject_HEAD
    uint64_t low, high; /* current interval [low, high], both < 2^32 */
    uint64_t pending;   /* bits waiting for the resolution of an E3 straddle */
    uint8_t *buf;
    Py_ssize_t len, cap; /* bytes completed in buf */
    uint32_t bitacc;     /* bits of the byte in progress */
    int nbits;
    int finished;
    Py_ssize_t nsym;
    /* scratch for the fused logits path */
    double *w;
    uint32_t *cdf;
    Py_ssize_t scratch_n;
} EncoderObject;

typedef struct {
    PyObject_HEAD
    uint64_t low, high, value;
    Py_buffer data;
    Py_ssize_t bitpos;   /* next bit to read */
    Py_ssize_t overrun;  /* bits read past the end (read as 0) */
    Py_ssize_t nsym;
    double *w;
    uint32_t *cdf;
    Py_ssize_t scratch_n;
} DecoderObject;


/* Get a C-contiguous buffer of 4- or 8-byte items of the given kind ('f' float, 'i' integer).
   Numpy arrays report their true format; plain bytes-like objects are refused. */
static int get_buf(PyObject *o, Py_buffer *b, int writable, char kind, Py_ssize_t itemsize, const char *what) {
    if (PyObject_GetBuffer(o, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    const char *f = b->format ? b->format : "B";
    while (*f == '<' || *f == '=' || *f == '@') f++;
    int ok = b->itemsize == itemsize && f[0] && !f[1];
    if (ok && kind == 'f') ok = f[0] == (itemsize == 4 ? 'f' : 'd');
    if (ok && kind == 'i') ok = strchr("iIlLqQ", f[0]) != NULL;
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous array of %zd-byte %s", what, itemsize,
                     kind == 'f' ? "floats" : "integers");
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

static int ensure_scratch(double **w, uint32_t **cdf, Py_ssize_t *have, Py_ssize_t n) {
    if (*have >= n) return 0;
    double *nw = PyMem_Realloc(*w, sizeof(double) * (size_t)n);
    if (!nw) { PyErr_NoMemory(); return -1; }
    *w = nw;
    uint32_t *nc = PyMem_Realloc(*cdf, sizeof(uint32_t) * (size_t)(n + 1));
    if (!nc) { PyErr_NoMemory(); return -1; }
    *cdf = nc;
    *have = n;
    return 0;
}

static int enc_putbit(EncoderObject *e, int bit) {
    e->bitacc = (e->bitacc << 1) | (uint32_t)bit;
    if (++e->nbits == 8) {
        if (e->len == e->cap) {
            Py_ssize_t ncap = e->cap ? e->cap * 2 : 4096;
            uint8_t *nb = PyMem_Realloc(e->buf, (size_t)ncap);
            if (!nb) { PyErr_NoMemory(); return -1; }
            e->buf = nb;
            e->cap = ncap;
        }
        e->buf[e->len++] = (uint8_t)e->bitacc;
        e->bitacc = 0;
        e->nbits = 0;
    }
    return 0;
}

static int enc_emit(EncoderObject *e, int bit) {
    if (enc_putbit(e, bit)) return -1;
    for (; e->pending; e->pending--)
        if (enc_putbit(e, !bit)) return -1;
    return 0;
}

/* Validate a CDF buffer and symbol; returns number of symbols or -1 with an exception set. */
static Py_ssize_t check_cdf(PyObject *o, Py_buffer *b) {
    if (get_buf(o, b, 0, 'i', 4, "cdf")) return -1;
    Py_ssize_t n = b->len / 4 - 1;
    const uint32_t *c = (const uint32_t *)b->buf;
    if (n < 1 || (size_t)n > MAX_SYMBOLS || c[0] != 0 || c[n] != CDF_TOTAL) {
        PyErr_SetString(PyExc_ValueError, "cdf must start at 0 and end at 2^24");
        PyBuffer_Release(b);
        return -1;
    }
    return n;
}

static int enc_encode(EncoderObject *e, const uint32_t *cdf, Py_ssize_t n, Py_ssize_t sym) {
    if (e->finished) { PyErr_SetString(PyExc_ValueError, "encoder already finished"); return -1; }
    if (sym < 0 || sym >= n) { PyErr_Format(PyExc_ValueError, "symbol %zd out of range [0, %zd)", sym, n); return -1; }
    uint32_t clo = cdf[sym], chi = cdf[sym + 1];
    if (chi <= clo) { PyErr_Format(PyExc_ValueError, "symbol %zd has zero frequency", sym); return -1; }
    uint64_t range = e->high - e->low + 1; /* in (2^30, 2^32] */
    uint64_t nhigh = e->low + ((range * chi) >> PREC) - 1;
    uint64_t nlow = e->low + ((range * clo) >> PREC);
    e->low = nlow;
    e->high = nhigh;
    /* width >= floor(range * 1 / 2^24) >= 64 > 0 */
    for (;;) {
        if (e->high < HALF) {
            if (enc_emit(e, 0)) return -1;
        } else if (e->low >= HALF) {
            if (enc_emit(e, 1)) return -1;
            e->low -= HALF;
            e->high -= HALF;
        } else if (e->low >= QUARTER && e->high < HALF + QUARTER) {
            e->pending++;
            e->low -= QUARTER;
            e->high -= QUARTER;
        } else {
            break;
        }
        e->low = (e->low << 1) & TOPMASK;
        e->high = ((e->high << 1) & TOPMASK) | 1;
    }
    e->nsym++;
    return 0;
}

static PyObject *Encoder_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "", kwlist)) return NULL;
    EncoderObject *e = (EncoderObject *)type->tp_alloc(type, 0);
    if (!e) return NULL;
    e->low = 0;
    e->high = TOPMASK;
    return (PyObject *)e;
}

static void Encoder_dealloc(EncoderObject *e) {
    PyMem_Free(e->buf);
    PyMem_Free(e->w);
    PyMem_Free(e->cdf);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

static PyObject *Encoder_encode(EncoderObject *e, PyObject *args) {
    Py_buffer b;
    Py_ssize_t sym;
    PyObject *co;
    if (!PyArg_ParseTuple(args, "On", &co, &sym)) return NULL;
    Py_ssize_t n = check_cdf(co, &b);
    if (n < 0) return NULL;
    int rc = enc_encode(e, (const uint32_t *)b.buf, n, sym);
    PyBuffer_Release(&b);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

static int check_logits(PyObject *o, Py_buffer *b, Py_ssize_t *rows, Py_ssize_t *cols) {
    if (get_buf(o, b, 0, 'f', 4, "logits")) return -1;
    if (b->ndim < 1 || b->ndim > 2) {
        PyErr_SetString(PyExc_TypeError, "logits must have 1 or 2 dimensions");
        PyBuffer_Release(b);
        return -1;
    }
    *rows = b->ndim == 2 ? b->shape[0] : 1;
    *cols = b->shape[b->ndim - 1];
    if (*cols < 1 || (size_t)*cols > MAX_SYMBOLS) {
        PyErr_SetString(PyExc_ValueError, "logits row length out of range");
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

/* encode_logits(logits: float32[rows, n], symbols: int32[rows]) -> None */
static PyObject *Encoder_encode_logits(EncoderObject *e, PyObject *args) {
    Py_buffer lb, sb;
    PyObject *lo, *so;
    if (!PyArg_ParseTuple(args, "OO", &lo, &so)) return NULL;
    Py_ssize_t rows, n;
    PyObject *ret = NULL;
    if (check_logits(lo, &lb, &rows, &n)) return NULL;
    if (get_buf(so, &sb, 0, 'i', 4, "symbols")) { PyBuffer_Release(&lb); return NULL; }
    if (sb.len / 4 != rows) {
        PyErr_SetString(PyExc_ValueError, "symbols must be int32 with one entry per logits row");
        goto done;
    }
    if (ensure_scratch(&e->w, &e->cdf, &e->scratch_n, n)) goto done;
    const float *L = (const float *)lb.buf;
    const int32_t *S = (const int32_t *)sb.buf;
    for (Py_ssize_t r = 0; r < rows; r++) {
        double sum = softmax_weights(L + r * n, n, e->w);
        if (quantise(e->w, sum, n, e->cdf)) { PyErr_SetString(PyExc_ValueError, "bad distribution"); goto done; }
        if (enc_encode(e, e->cdf, n, S[r])) goto done;
    }
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&lb);
    PyBuffer_Release(&sb);
    return ret;
}

static PyObject *Encoder_finish(EncoderObject *e, PyObject *Py_UNUSED(ignored)) {
    if (!e->finished) {
        /* two more bits pin a point inside [low, high] whatever bits follow (zeros) */
        e->pending++;
        if (enc_emit(e, e->low < QUARTER ? 0 : 1)) return NULL;
        while (e->nbits)
            if (enc_putbit(e, 0)) return NULL;
        e->finished = 1;
    }
    return PyBytes_FromStringAndSize((const char *)e->buf, e->len);
}

static PyObject *Encoder_get_nsym(EncoderObject *e, void *c) { return PyLong_FromSsize_t(e->nsym); }
static PyObject *Encoder_get_nbytes(EncoderObject *e, void *c) { return PyLong_FromSsize_t(e->len); }

static PyMethodDef Encoder_methods[] = {
    {"encode", (PyCFunction)Encoder_encode, METH_VARARGS,
     "encode(cdf, symbol)\n\nEncode one symbol. cdf: uint32 array of n+1 entries, cdf[0] = 0, "
     "cdf[n] = 2**24, strictly increasing at symbol; symbol: int in [0, n)."},
    {"encode_logits", (PyCFunction)Encoder_encode_logits, METH_VARARGS,
     "encode_logits(logits, symbols)\n\nFor each row r of float32 logits (shape (rows, n) or (n,)), "
     "build the CDF as cdf_from_logits does and encode int32 symbols[r]."},
    {"finish", (PyCFunction)Encoder_finish, METH_NOARGS,
     "finish() -> bytes\n\nFlush the final interval and return the whole stream. Idempotent."},
    {NULL}};

static PyGetSetDef Encoder_getset[] = {
    {"symbols", (getter)Encoder_get_nsym, NULL, "number of symbols encoded", NULL},
    {"nbytes", (getter)Encoder_get_nbytes, NULL, "bytes completed so far", NULL},
    {NULL}};

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nacrith._native.Encoder",
    .tp_basicsize = sizeof(EncoderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Encoder()\n\n32-bit arithmetic encoder over 2^24-total CDFs (native/NOTES.md).",
    .tp_new = Encoder_new,
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_methods = Encoder_methods,
    .tp_getset = Encoder_getset,
};

/* ---------------------------------- decoder ---------------------------------------------- */
static int dec_bit(DecoderObject *d) {
    Py_ssize_t byte = d->bitpos >> 3;
    int bit = 0;
    if (byte < d->data.len) bit = (((const uint8_t *)d->data.buf)[byte] >> (7 - (d->bitpos & 7))) & 1;
    else d->overrun++;
    d->bitpos++;
    return bit;
}

static Py_ssize_t dec_decode(DecoderObject *d, const uint32_t *cdf, Py_ssize_t n) {
    uint64_t range = d->high - d->low + 1;
    /* largest s with low + floor(range * cdf[s] / 2^24) <= value: the map is non-decreasing in
       s and strictly increasing across every symbol (each has width >= 64) */
    Py_ssize_t lo = 0, hi = n;
    while (hi - lo > 1) {
        Py_ssize_t mid = (lo + hi) >> 1;
        if (d->low + ((range * cdf[mid]) >> PREC) <= d->value) lo = mid;
        else hi = mid;
    }
    Py_ssize_t s = lo;
    d->high = d->low + ((range * cdf[s + 1]) >> PREC) - 1;
    d->low = d->low + ((range * cdf[s]) >> PREC);
    for (;;) {
        if (d->high < HALF) {
        } else if (d->low >= HALF) {
            d->low -= HALF;
            d->high -= HALF;
            d->value -= HALF;
        } else if (d->low >= QUARTER && d->high < HALF + QUARTER) {
            d->low -= QUARTER;
            d->high -= QUARTER;
            d->value -= QUARTER;
        } else {
            break;
        }
        d->low = (d->low << 1) & TOPMASK;
        d->high = ((d->high << 1) & TOPMASK) | 1;
        d->value = ((d->value << 1) & TOPMASK) | (uint64_t)dec_bit(d);
    }
    d->nsym++;
    return s;
}

static PyObject *Decoder_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"data", NULL};
    DecoderObject *d = (DecoderObject *)type->tp_alloc(type, 0);
    if (!d) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*", kwlist, &d->data)) {
        Py_DECREF(d);
        return NULL;
    }
    d->low = 0;
    d->high = TOPMASK;
    for (int i = 0; i < 32; i++) d->value = (d->value << 1) | (uint64_t)dec_bit(d);
    return (PyObject *)d;
}

static void Decoder_dealloc(DecoderObject *d) {
    if (d->data.obj) PyBuffer_Release(&d->data);
    PyMem_Free(d->w);
    PyMem_Free(d->cdf);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

static PyObject *Decoder_decode(DecoderObject *d, PyObject *args) {
    Py_buffer b;
    PyObject *co;
    if (!PyArg_ParseTuple(args, "O", &co)) return NULL;
    Py_ssize_t n = check_cdf(co, &b);
    if (n < 0) return NULL;
    Py_ssize_t s = dec_decode(d, (const uint32_t *)b.buf, n);
    PyBuffer_Release(&b);
    return PyLong_FromSsize_t(s);
}

/* decode_logits(logits: float32[rows, n], out: int32[rows]) -> None: one symbol per row */
static PyObject *Decoder_decode_logits(DecoderObject *d, PyObject *args) {
    Py_buffer lb, ob;
    PyObject *lo, *oo;
    if (!PyArg_ParseTuple(args, "OO", &lo, &oo)) return NULL;
    Py_ssize_t rows, n;
    PyObject *ret = NULL;
    if (check_logits(lo, &lb, &rows, &n)) return NULL;
    if (get_buf(oo, &ob, 1, 'i', 4, "out")) { PyBuffer_Release(&lb); return NULL; }
    if (ob.len / 4 != rows) {
        PyErr_SetString(PyExc_ValueError, "out must be int32 with one entry per logits row");
        goto done;
    }
    if (ensure_scratch(&d->w, &d->cdf, &d->scratch_n, n)) goto done;
    const float *L = (const float *)lb.buf;
    int32_t *O = (int32_t *)ob.buf;
    for (Py_ssize_t r = 0; r < rows; r++) {
        double sum = softmax_weights(L + r * n, n, d->w);
        if (quantise(d->w, sum, n, d->cdf)) { PyErr_SetString(PyExc_ValueError, "bad distribution"); goto done; }
        O[r] = (int32_t)dec_decode(d, d->cdf, n);
    }
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&lb);
    PyBuffer_Release(&ob);
    return ret;
}

static PyObject *Decoder_get_overrun(DecoderObject *d, void *c) {
    /* bits read past the end of the data beyond the 32-bit look-ahead window */
    Py_ssize_t extra = d->overrun - 32;
    return PyLong_FromSsize_t(extra > 0 ? extra : 0);
}
static PyObject *Decoder_get_nsym(DecoderObject *d, void *c) { return PyLong_FromSsize_t(d->nsym); }
static PyObject *Decoder_get_bitpos(DecoderObject *d, void *c) { return PyLong_FromSsize_t(d->bitpos); }

static PyMethodDef Decoder_methods[] = {
    {"decode", (PyCFunction)Decoder_decode, METH_VARARGS,
     "decode(cdf) -> int\n\nDecode one symbol against the uint32 CDF (n+1 entries, total 2**24)."},
    {"decode_logits", (PyCFunction)Decoder_decode_logits, METH_VARARGS,
     "decode_logits(logits, out)\n\nFor each row of float32 logits, build the CDF as "
     "cdf_from_logits does and decode one symbol into int32 out[row]."},
    {NULL}};

static PyGetSetDef Decoder_getset[] = {
    {"overrun", (getter)Decoder_get_overrun, NULL,
     "bits consumed past the end of the data beyond the coder's 32-bit look-ahead (0 for a valid stream)", NULL},
    {"symbols", (getter)Decoder_get_nsym, NULL, "number of symbols decoded", NULL},
    {"bitpos", (getter)Decoder_get_bitpos, NULL, "bits consumed, including the 32-bit look-ahead", NULL},
    {NULL}};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nacrith._native.Decoder",
    .tp_basicsize = sizeof(DecoderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Decoder(data)\n\nArithmetic decoder for streams written by Encoder (native/NOTES.md).",
    .tp_new = Decoder_new,
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_methods = Decoder_methods,
    .tp_getset = Decoder_getset,
};

/* The per-lane ensemble (n-gram, bias, mixer, skip) shares this translation unit. */
#include "ensemble.c"

/* ---------------------------------- module functions ------------------------------------- */
static PyObject *py_cdf_from_logits(PyObject *self, PyObject *args) {
    Py_buffer lb, cb;
    PyObject *lo, *co;
    if (!PyArg_ParseTuple(args, "OO", &lo, &co)) return NULL;
    Py_ssize_t rows, n;
    PyObject *ret = NULL;
    double *w = NULL;
    if (check_logits(lo, &lb, &rows, &n)) return NULL;
    if (get_buf(co, &cb, 1, 'i', 4, "cdf")) { PyBuffer_Release(&lb); return NULL; }
    if (rows != 1 || cb.len / 4 != n + 1) {
        PyErr_SetString(PyExc_ValueError, "need 1-D logits of n entries and a uint32 cdf of n+1");
        goto done;
    }
    w = PyMem_Malloc(sizeof(double) * (size_t)n);
    if (!w) { PyErr_NoMemory(); goto done; }
    double sum = softmax_weights((const float *)lb.buf, n, w);
    if (quantise(w, sum, n, (uint32_t *)cb.buf)) { PyErr_SetString(PyExc_ValueError, "bad distribution"); goto done; }
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyMem_Free(w);
    PyBuffer_Release(&lb);
    PyBuffer_Release(&cb);
    return ret;
}

static PyObject *py_cdf_from_probs(PyObject *self, PyObject *args) {
    Py_buffer pb, cb;
    PyObject *po, *co;
    if (!PyArg_ParseTuple(args, "OO", &po, &co)) return NULL;
    PyObject *ret = NULL;
    if (get_buf(po, &pb, 0, 'f', 8, "probs")) return NULL;
    if (get_buf(co, &cb, 1, 'i', 4, "cdf")) { PyBuffer_Release(&pb); return NULL; }
    Py_ssize_t n = pb.len / 8;
    if (n < 1 || (size_t)n > MAX_SYMBOLS || cb.len / 4 != n + 1) {
        PyErr_SetString(PyExc_ValueError, "need 1-D float64 probs of n entries and a uint32 cdf of n+1");
        goto done;
    }
    const double *p = (const double *)pb.buf;
    double sum = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) sum += (p[i] > 0.0) ? p[i] : 0.0; /* index order */
    /* negative / NaN weights count as 0 (quantise gives them the floor count) */
    if (quantise(p, sum, n, (uint32_t *)cb.buf)) { PyErr_SetString(PyExc_ValueError, "bad distribution"); goto done; }
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&pb);
    PyBuffer_Release(&cb);
    return ret;
}

static PyObject *py_softmax(PyObject *self, PyObject *args) {
    Py_buffer lb, ob;
    PyObject *lo, *oo;
    if (!PyArg_ParseTuple(args, "OO", &lo, &oo)) return NULL;
    Py_ssize_t rows, n;
    PyObject *ret = NULL;
    if (check_logits(lo, &lb, &rows, &n)) return NULL;
    if (get_buf(oo, &ob, 1, 'f', 8, "out")) { PyBuffer_Release(&lb); return NULL; }
    if (ob.len / 8 != rows * n) {
        PyErr_SetString(PyExc_ValueError, "out must be float64 with the shape of logits");
        goto done;
    }
    for (Py_ssize_t r = 0; r < rows; r++) {
        double *o = (double *)ob.buf + r * n;
        double sum = softmax_weights((const float *)lb.buf + r * n, n, o);
        double inv = 1.0 / sum;
        for (Py_ssize_t i = 0; i < n; i++) o[i] *= inv;
    }
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&lb);
    PyBuffer_Release(&ob);
    return ret;
}

static PyObject *py_det_exp(PyObject *self, PyObject *arg) {
    double x = PyFloat_AsDouble(arg);
    if (x == -1.0 && PyErr_Occurred()) return NULL;
    if (!(x <= 0.0) || x < EXP_CUTOFF) { /* NaN fails the first test */
        PyErr_SetString(PyExc_ValueError, "det_exp is defined on [-32, 0]");
        return NULL;
    }
    return PyFloat_FromDouble(det_exp(x));
}

static PyObject *py_set_simd(PyObject *self, PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    if (on) simd_init(); /* on only where the CPU has it */
    else use_simd = 0;
    return PyBool_FromLong(use_simd);
}

static PyMethodDef module_methods[] = {
    {"set_simd", py_set_simd, METH_O,
     "set_simd(on) -> bool: use the AVX2 kernels (when the CPU has them) or the scalar reference "
     "loops; returns whether AVX2 is now in use. The results are bit-identical either way."},
    {"cdf_from_logits", py_cdf_from_logits, METH_VARARGS,
     "cdf_from_logits(logits, cdf)\n\nlogits: float32[n]; cdf: uint32[n+1] written in place with "
     "the quantised softmax (total 2**24, every symbol >= 1)."},
    {"cdf_from_probs", py_cdf_from_probs, METH_VARARGS,
     "cdf_from_probs(probs, cdf)\n\nprobs: float64[n] non-negative weights (need not sum to 1); "
     "cdf: uint32[n+1] written in place."},
    {"softmax", py_softmax, METH_VARARGS,
     "softmax(logits, out)\n\nDeterministic softmax: logits float32 (rows, n) or (n,), out float64 "
     "of the same shape."},
    {"det_exp", py_det_exp, METH_O, "det_exp(x) -> float: the fixed exp used for CDFs, x in [-32, 0]."},
    {NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "nacrith._native",
    "Bit-exact core of nacrith: CDF quantisation (2^24 total) and a 32-bit arithmetic coder.", -1,
    module_methods};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&EncoderType) < 0 || PyType_Ready(&DecoderType) < 0 ||
        PyType_Ready(&LaneModelType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    simd_init();
    Py_INCREF(&EncoderType);
    Py_INCREF(&DecoderType);
    Py_INCREF(&LaneModelType);
    if (PyModule_AddObject(m, "Encoder", (PyObject *)&EncoderType) ||
        PyModule_AddObject(m, "Decoder", (PyObject *)&DecoderType) ||
        PyModule_AddObject(m, "LaneModel", (PyObject *)&LaneModelType) ||
        PyModule_AddIntConstant(m, "PRECISION", PREC) ||
        PyModule_AddIntConstant(m, "CDF_TOTAL", CDF_TOTAL)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
