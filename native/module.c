/*
 * nacrith._native: the Python bindings of the bit-exact core (native/NOTES.md).
 *
 *   cdf.c       logits / weights -> integer CDF of total 2^24 (cdf_from_logits, cdf_from_probs)
 *   coder.c     the 32-bit arithmetic coder over such CDFs (Encoder, Decoder)
 *   ensemble.c  the per-lane model whose CDFs the coder codes (LaneModel)
 *   simd.c      the vocabulary loops under both, AVX2 or scalar, bit-identical
 *
 * The coder takes the model: Encoder.encode(cdf, symbol) codes a symbol with a CDF,
 * Encoder.encode_step(model, logits, symbol, raw) one step of a lane model (escape groups, then
 * the token) with the CDFs the model makes, Decoder.decode_step(model, logits) its inverse.
 * Test-only entry points live in the private submodule nacrith._native._testing.
 *
 * This file only converts arguments, runs the steps and raises errors: no arithmetic of the
 * format is done here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "cdf.h"
#include "coder.h"
#include "ensemble.h"
#include "simd.h"

/* ---------------------------------------------------------------------- argument checks */
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

/* Validate a CDF buffer; returns its number of symbols or -1 with an exception set. */
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

/* ---------------------------------------------------------------------- LaneModel */
typedef struct {
    PyObject_HEAD
    lane_model *m;
    PyObject *owner; /* the LaneModel whose heads are shared (a new reference), or NULL */
} LaneModelObject;

static PyTypeObject LaneModelType;

static PyObject *LaneModel_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"n_vocab", "ngram_order", "ngram_bits", "ngram_kappa", "bias_lr",
                             "mixer", "mix_lr", "mix_init", "skip_bits", "shared", "match_min",
                             "match_bits", "match_lr", NULL};
    lane_params p = {0, 0, 16, 5.0, 0.0, 0, 0.5, 0.85, 0.0, 0, 18, 0.05};
    PyObject *shared = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "n|iiddidddOiid", kwlist, &p.n_vocab, &p.ngram_order,
                                     &p.ngram_bits, &p.ngram_kappa, &p.bias_lr, &p.mixer, &p.mix_lr,
                                     &p.mix_init, &p.skip_bits, &shared, &p.match_min, &p.match_bits,
                                     &p.match_lr))
        return NULL;
    lane_model *share = NULL;
    if (shared != Py_None) {
        if (!PyObject_TypeCheck(shared, type)) {
            PyErr_SetString(PyExc_TypeError, "shared must be a LaneModel");
            return NULL;
        }
        share = ((LaneModelObject *)shared)->m;
        if (!lane_can_share(share, &p)) {
            PyErr_SetString(PyExc_ValueError, "shared LaneModel has other parameters");
            return NULL;
        }
    }
    if (!lane_params_valid(&p)) {
        PyErr_SetString(PyExc_ValueError, "LaneModel parameter out of range");
        return NULL;
    }
    LaneModelObject *o = (LaneModelObject *)type->tp_alloc(type, 0);
    if (!o) return NULL;
    o->m = lane_model_new(&p, share);
    if (!o->m) {
        Py_DECREF(o);
        return PyErr_NoMemory();
    }
    if (share) {
        Py_INCREF(shared);
        o->owner = shared;
    }
    return (PyObject *)o;
}

static void LaneModel_dealloc(LaneModelObject *o) {
    lane_model_free(o->m);
    Py_XDECREF(o->owner);
    Py_TYPE(o)->tp_free((PyObject *)o);
}

static PyObject *LaneModel_prepare(LaneModelObject *o, PyObject *Py_UNUSED(x)) {
    return PyBool_FromLong(lane_prepare(o->m));
}

/* Row of logits (float32[n_vocab]) or None -> pointer; 1 when b holds a buffer to release,
   0 for None, -1 with an exception on error. */
static int logits_row(lane_model *m, PyObject *o, Py_buffer *b, const float **out) {
    *out = NULL;
    if (o == Py_None) return 0;
    Py_ssize_t rows, cols;
    if (check_logits(o, b, &rows, &cols)) return -1;
    if (rows != 1 || cols != lane_n_vocab(m)) {
        PyBuffer_Release(b);
        PyErr_Format(PyExc_ValueError, "need one row of %zd logits", lane_n_vocab(m));
        return -1;
    }
    *out = (const float *)b->buf;
    return 1;
}

static PyObject *LaneModel_get_tokens(LaneModelObject *o, void *c) { return PyLong_FromLongLong(lane_tokens(o->m)); }
static PyObject *LaneModel_get_skipped(LaneModelObject *o, void *c) { return PyLong_FromLongLong(lane_skipped(o->m)); }
static PyObject *LaneModel_get_weights(LaneModelObject *o, void *c) {
    int k = lane_n_weight_sets(o->m);
    PyObject *l = PyList_New(k);
    if (!l) return NULL;
    for (int i = 0; i < k; i++) {
        double a, b;
        lane_weights(o->m, i, &a, &b);
        PyObject *t = Py_BuildValue("(dd)", a, b);
        if (!t) { Py_DECREF(l); return NULL; }
        PyList_SET_ITEM(l, i, t);
    }
    return l;
}
static PyObject *LaneModel_get_memory(LaneModelObject *o, void *c) { return PyLong_FromSize_t(lane_memory(o->m)); }
static PyObject *LaneModel_get_match(LaneModelObject *o, void *c) {
    long long pred, hits;
    lane_match_stats(o->m, &pred, &hits);
    return Py_BuildValue("(LL)", pred, hits);
}

static PyMethodDef LaneModel_methods[] = {
    {"prepare", (PyCFunction)LaneModel_prepare, METH_NOARGS,
     "prepare() -> bool\n\nPredict from the n-gram head for the next token; True when it is "
     "confident enough that the LLM is skipped for this token."},
    {NULL}};

static PyGetSetDef LaneModel_getset[] = {
    {"tokens", (getter)LaneModel_get_tokens, NULL, "tokens coded", NULL},
    {"skipped", (getter)LaneModel_get_skipped, NULL, "tokens coded without the LLM", NULL},
    {"weights", (getter)LaneModel_get_weights, NULL, "mixer weights per weight set", NULL},
    {"memory", (getter)LaneModel_get_memory, NULL, "bytes of state", NULL},
    {"match", (getter)LaneModel_get_match, NULL, "match model: (steps with a prediction, of those right)", NULL},
    {NULL}};

static PyTypeObject LaneModelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "nacrith._native.LaneModel",
    .tp_basicsize = sizeof(LaneModelObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "LaneModel(n_vocab, ngram_order=0, ngram_bits=16, ngram_kappa=5.0, bias_lr=0.0, "
              "mixer=0, mix_lr=0.5, mix_init=0.85, skip_bits=0.0, shared=None)\n\n"
              "Per-lane ensemble: n-gram head, bias head, mixer, confidence skip (native/ensemble.c). "
              "It makes the CDFs of a lane's steps; Encoder.encode_step / Decoder.decode_step code "
              "them. With shared=another LaneModel (same parameters) the n-gram tables, bias, mixer "
              "weights and escape models are shared; the history and the prediction stay per lane.",
    .tp_new = LaneModel_new,
    .tp_dealloc = (destructor)LaneModel_dealloc,
    .tp_methods = LaneModel_methods,
    .tp_getset = LaneModel_getset,
};

/* ---------------------------------------------------------------------- coding a lane step */
#define STEP_ELOGITS (-100) /* logits needed (the n-gram head is not confident) but None given */
#define STEP_EMODEL (-101)  /* the model made no valid CDF */

/* Raise the error of an ac_* or step_* return code rc (sym: the symbol being coded); -1. */
static int raise_code(int rc, Py_ssize_t sym) {
    switch (rc) {
    case AC_ENOMEM: PyErr_NoMemory(); break;
    case AC_EFINISHED: PyErr_SetString(PyExc_ValueError, "encoder already finished"); break;
    case AC_ESYMBOL: PyErr_Format(PyExc_ValueError, "symbol %zd out of range", sym); break;
    case AC_EZERO: PyErr_Format(PyExc_ValueError, "symbol %zd has zero frequency", sym); break;
    case STEP_ELOGITS:
        PyErr_SetString(PyExc_ValueError, "logits required: the n-gram head is not confident");
        break;
    default: PyErr_SetString(PyExc_ValueError, "bad distribution"); break;
    }
    return -1;
}

/* One escape group: the escape symbol, the length k (1..ESC_MAXLEN), the k bytes. */
static int encode_escape(ac_encoder *e, lane_model *m, const float *L, const uint8_t *d, int k) {
    const ptrdiff_t n = lane_n_vocab(m);
    uint32_t cdf[257];
    int rc;
    const uint32_t *tc = lane_token_cdf(m, L);
    if (!tc) return STEP_EMODEL;
    if ((rc = ac_encode(e, tc, n + 1, n))) return rc;
    if (lane_escape_len_cdf(m, cdf)) return STEP_EMODEL;
    if ((rc = ac_encode(e, cdf, ESC_MAXLEN, k - 1))) return rc;
    lane_escape_len_update(m, k - 1);
    for (int i = 0; i < k; i++) {
        if (lane_escape_byte_cdf(m, cdf)) return STEP_EMODEL;
        if ((rc = ac_encode(e, cdf, 256, d[i]))) return rc;
        lane_escape_byte_update(m, d[i]);
    }
    lane_escape_end(m);
    return 0;
}

/* One step: the raw bytes (escape groups of at most ESC_MAXLEN), then token y (in range).
   L: a row of logits, or NULL (allowed only when the model skips). 0 or an error code. */
static int encode_step(ac_encoder *e, lane_model *m, const float *L, const uint8_t *raw, Py_ssize_t raw_len,
                       int32_t y) {
    int rc;
    if (lane_begin(m, &L)) return STEP_ELOGITS;
    for (Py_ssize_t a = 0; a < raw_len; a += ESC_MAXLEN) {
        int k = (int)(raw_len - a < ESC_MAXLEN ? raw_len - a : ESC_MAXLEN);
        if ((rc = encode_escape(e, m, L, raw + a, k))) return rc;
    }
    const uint32_t *tc = lane_token_cdf(m, L);
    if (!tc) return STEP_EMODEL;
    if ((rc = ac_encode(e, tc, lane_n_vocab(m) + 1, y))) return rc;
    lane_token_update(m, L, y);
    return 0;
}

/* One symbol of a step: the token (>= 0) or an escape group (-1, its k bytes in out, *k set). */
static int decode_step(ac_decoder *d, lane_model *m, const float *L, ptrdiff_t *y, uint8_t *out, int *k) {
    const ptrdiff_t n = lane_n_vocab(m);
    uint32_t cdf[257];
    if (lane_begin(m, &L)) return STEP_ELOGITS;
    const uint32_t *tc = lane_token_cdf(m, L);
    if (!tc) return STEP_EMODEL;
    *y = ac_decode(d, tc, n + 1);
    if (*y < n) {
        lane_token_update(m, L, (int32_t)*y);
        return 0;
    }
    *y = -1; /* escape group */
    if (lane_escape_len_cdf(m, cdf)) return STEP_EMODEL;
    *k = (int)ac_decode(d, cdf, ESC_MAXLEN) + 1;
    lane_escape_len_update(m, *k - 1);
    for (int i = 0; i < *k; i++) {
        if (lane_escape_byte_cdf(m, cdf)) return STEP_EMODEL;
        out[i] = (uint8_t)ac_decode(d, cdf, 256);
        lane_escape_byte_update(m, out[i]);
    }
    lane_escape_end(m);
    return 0;
}

/* ---------------------------------------------------------------------- Encoder */
typedef struct {
    PyObject_HEAD
    ac_encoder ac;
} EncoderObject;

static PyObject *Encoder_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "", kwlist)) return NULL;
    EncoderObject *e = (EncoderObject *)type->tp_alloc(type, 0);
    if (!e) return NULL;
    ac_encoder_init(&e->ac);
    return (PyObject *)e;
}

static void Encoder_dealloc(EncoderObject *e) {
    ac_encoder_free(&e->ac);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

/* encode(cdf, symbol) */
static PyObject *Encoder_encode(EncoderObject *e, PyObject *args) {
    Py_buffer b;
    Py_ssize_t sym;
    PyObject *co;
    if (!PyArg_ParseTuple(args, "On", &co, &sym)) return NULL;
    Py_ssize_t n = check_cdf(co, &b);
    if (n < 0) return NULL;
    int rc = ac_encode(&e->ac, (const uint32_t *)b.buf, n, sym);
    PyBuffer_Release(&b);
    if (rc == AC_ESYMBOL) return PyErr_Format(PyExc_ValueError, "symbol %zd out of range [0, %zd)", sym, n);
    if (rc) return raise_code(rc, sym), NULL;
    Py_RETURN_NONE;
}

/* encode_step(model, logits_or_None, symbol, raw=b"") */
static PyObject *Encoder_encode_step(EncoderObject *e, PyObject *args) {
    LaneModelObject *mo;
    PyObject *lo;
    Py_ssize_t y;
    Py_buffer raw = {0};
    if (!PyArg_ParseTuple(args, "O!On|y*", &LaneModelType, &mo, &lo, &y, &raw)) return NULL;
    PyObject *ret = NULL;
    Py_buffer b;
    const float *L;
    int got = 0;
    if (y < 0 || y >= lane_n_vocab(mo->m)) {
        PyErr_Format(PyExc_ValueError, "symbol %zd out of range", y);
        goto done;
    }
    got = logits_row(mo->m, lo, &b, &L);
    if (got < 0) { got = 0; goto done; }
    int rc = encode_step(&e->ac, mo->m, L, raw.buf, raw.buf ? raw.len : 0, (int32_t)y);
    if (rc) { raise_code(rc, y); goto done; }
    ret = Py_None;
    Py_INCREF(ret);
done:
    if (got) PyBuffer_Release(&b);
    if (raw.obj) PyBuffer_Release(&raw);
    return ret;
}

/* encode_block(model, logits[k, n], symbols[k], escapes=None): encode_step() for each row; rows of
   skipped steps are ignored (the decoder will not compute them). escapes: list of (row, bytes)
   sorted by row: raw bytes coded (escaped) before that row's token. */
static PyObject *Encoder_encode_block(EncoderObject *e, PyObject *args) {
    LaneModelObject *mo;
    PyObject *lo, *so, *esc = Py_None;
    if (!PyArg_ParseTuple(args, "O!OO|O", &LaneModelType, &mo, &lo, &so, &esc)) return NULL;
    if (esc != Py_None && !PyList_Check(esc)) {
        PyErr_SetString(PyExc_TypeError, "escapes must be a list of (row, bytes)");
        return NULL;
    }
    lane_model *m = mo->m;
    const Py_ssize_t n = lane_n_vocab(m);
    Py_buffer lb, sb;
    Py_ssize_t rows, cols;
    if (check_logits(lo, &lb, &rows, &cols)) return NULL;
    if (get_buf(so, &sb, 0, 'i', 4, "symbols")) { PyBuffer_Release(&lb); return NULL; }
    PyObject *ret = NULL;
    Py_ssize_t ei = 0, ne = esc == Py_None ? 0 : PyList_GET_SIZE(esc);
    if (cols != n || sb.len / 4 != rows) {
        PyErr_SetString(PyExc_ValueError, "logits must be (k, n_vocab) with k symbols");
        goto done;
    }
    const float *L = (const float *)lb.buf;
    const int32_t *S = (const int32_t *)sb.buf;
    for (Py_ssize_t r = 0; r < rows; r++) {
        int32_t y = S[r];
        if (y < 0 || y >= n) { PyErr_Format(PyExc_ValueError, "symbol %d out of range", y); goto done; }
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
        int rc = encode_step(&e->ac, m, L + r * cols, (const uint8_t *)raw, raw_len, y);
        if (rc) { raise_code(rc, y); goto done; }
    }
    if (ei != ne) { PyErr_SetString(PyExc_ValueError, "escape row out of range"); goto done; }
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&lb);
    PyBuffer_Release(&sb);
    return ret;
}

static PyObject *Encoder_finish(EncoderObject *e, PyObject *Py_UNUSED(ignored)) {
    if (ac_finish(&e->ac)) return PyErr_NoMemory();
    return PyBytes_FromStringAndSize((const char *)e->ac.buf, e->ac.len);
}

static PyObject *Encoder_get_nsym(EncoderObject *e, void *c) { return PyLong_FromSsize_t(e->ac.nsym); }
static PyObject *Encoder_get_nbytes(EncoderObject *e, void *c) { return PyLong_FromSsize_t(e->ac.len); }

static PyMethodDef Encoder_methods[] = {
    {"encode", (PyCFunction)Encoder_encode, METH_VARARGS,
     "encode(cdf, symbol)\n\nEncode one symbol with the model cdf: uint32 array of n+1 entries, "
     "cdf[0] = 0, cdf[n] = 2**24, strictly increasing at symbol; symbol: int in [0, n)."},
    {"encode_step", (PyCFunction)Encoder_encode_step, METH_VARARGS,
     "encode_step(model, logits, symbol, raw=b'')\n\nCode one step of the LaneModel model: the raw "
     "bytes (escaped, groups of at most 16), then the token; logits float32[n_vocab] (ignored, may "
     "be None, when model.prepare() says skip); the model then learns the token."},
    {"encode_block", (PyCFunction)Encoder_encode_block, METH_VARARGS,
     "encode_block(model, logits, symbols, escapes=None)\n\nencode_step() for every row of float32 "
     "logits (k, n_vocab) and int32 symbols (k,); escapes: list of (row, bytes) sorted by row."},
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

/* ---------------------------------------------------------------------- Decoder */
typedef struct {
    PyObject_HEAD
    ac_decoder ac;
    Py_buffer data; /* ac reads from it */
} DecoderObject;

static PyObject *Decoder_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"data", NULL};
    DecoderObject *d = (DecoderObject *)type->tp_alloc(type, 0);
    if (!d) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*", kwlist, &d->data)) {
        Py_DECREF(d);
        return NULL;
    }
    ac_decoder_init(&d->ac, (const uint8_t *)d->data.buf, d->data.len);
    return (PyObject *)d;
}

static void Decoder_dealloc(DecoderObject *d) {
    if (d->data.obj) PyBuffer_Release(&d->data);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

/* decode(cdf) -> int */
static PyObject *Decoder_decode(DecoderObject *d, PyObject *args) {
    Py_buffer b;
    PyObject *co;
    if (!PyArg_ParseTuple(args, "O", &co)) return NULL;
    Py_ssize_t n = check_cdf(co, &b);
    if (n < 0) return NULL;
    Py_ssize_t s = ac_decode(&d->ac, (const uint32_t *)b.buf, n);
    PyBuffer_Release(&b);
    return PyLong_FromSsize_t(s);
}

/* decode_step(model, logits_or_None) -> int token, or bytes (one escape group; call again for the
   rest of the step, with the same logits) */
static PyObject *Decoder_decode_step(DecoderObject *d, PyObject *args) {
    LaneModelObject *mo;
    PyObject *lo;
    if (!PyArg_ParseTuple(args, "O!O", &LaneModelType, &mo, &lo)) return NULL;
    Py_buffer b;
    const float *L;
    int got = logits_row(mo->m, lo, &b, &L);
    if (got < 0) return NULL;
    PyObject *ret = NULL;
    ptrdiff_t y = 0;
    uint8_t out[ESC_MAXLEN];
    int k = 0;
    int rc = decode_step(&d->ac, mo->m, L, &y, out, &k);
    if (rc) raise_code(rc, 0);
    else if (y < 0) ret = PyBytes_FromStringAndSize((const char *)out, k);
    else ret = PyLong_FromSsize_t(y);
    if (got) PyBuffer_Release(&b);
    return ret;
}

static PyObject *Decoder_get_overrun(DecoderObject *d, void *c) { return PyLong_FromSsize_t(ac_overrun(&d->ac)); }
static PyObject *Decoder_get_nsym(DecoderObject *d, void *c) { return PyLong_FromSsize_t(d->ac.nsym); }
static PyObject *Decoder_get_bitpos(DecoderObject *d, void *c) { return PyLong_FromSsize_t(d->ac.bitpos); }

static PyMethodDef Decoder_methods[] = {
    {"decode", (PyCFunction)Decoder_decode, METH_VARARGS,
     "decode(cdf) -> int\n\nDecode one symbol with the model cdf (uint32, n+1 entries, total 2**24)."},
    {"decode_step", (PyCFunction)Decoder_decode_step, METH_VARARGS,
     "decode_step(model, logits) -> int | bytes\n\nDecode one token of the LaneModel model (logits "
     "None when model.prepare() says skip), which then learns it; an escape group comes back as "
     "bytes (call again, same logits, for the token)."},
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

/* ---------------------------------------------------------------------- CDF functions */
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
    if (quantise_probs((const double *)pb.buf, n, (uint32_t *)cb.buf)) {
        PyErr_SetString(PyExc_ValueError, "bad distribution");
        goto done;
    }
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
    for (Py_ssize_t r = 0; r < rows; r++) softmax((const float *)lb.buf + r * n, n, (double *)ob.buf + r * n);
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&lb);
    PyBuffer_Release(&ob);
    return ret;
}

static PyMethodDef module_methods[] = {
    {"cdf_from_logits", py_cdf_from_logits, METH_VARARGS,
     "cdf_from_logits(logits, cdf)\n\nlogits: float32[n]; cdf: uint32[n+1] written in place with "
     "the quantised softmax (total 2**24, every symbol >= 1)."},
    {"cdf_from_probs", py_cdf_from_probs, METH_VARARGS,
     "cdf_from_probs(probs, cdf)\n\nprobs: float64[n] non-negative weights (need not sum to 1); "
     "cdf: uint32[n+1] written in place."},
    {"softmax", py_softmax, METH_VARARGS,
     "softmax(logits, out)\n\nDeterministic softmax: logits float32 (rows, n) or (n,), out float64 "
     "of the same shape."},
    {NULL}};

/* ---------------------------------------------------------------------- _testing */
static PyObject *py_set_simd(PyObject *self, PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    return PyBool_FromLong(simd_set(on));
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

/* distribution(model, logits_or_None) -> bytes of float64[n_vocab + 1] */
static PyObject *py_distribution(PyObject *self, PyObject *args) {
    LaneModelObject *mo;
    PyObject *lo;
    if (!PyArg_ParseTuple(args, "O!O", &LaneModelType, &mo, &lo)) return NULL;
    Py_buffer b;
    const float *L;
    int got = logits_row(mo->m, lo, &b, &L);
    if (got < 0) return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof(double) * (lane_n_vocab(mo->m) + 1));
    if (out) {
        int rc = lane_distribution(mo->m, L, (double *)PyBytes_AS_STRING(out));
        if (rc) {
            PyErr_SetString(PyExc_ValueError, rc == -2 ? "logits required" : "bad distribution");
            Py_CLEAR(out);
        }
    }
    if (got) PyBuffer_Release(&b);
    return out;
}

/* observe(model, symbol) */
static PyObject *py_observe(PyObject *self, PyObject *args) {
    LaneModelObject *mo;
    Py_ssize_t y;
    if (!PyArg_ParseTuple(args, "O!n", &LaneModelType, &mo, &y)) return NULL;
    if (y < 0 || y >= lane_n_vocab(mo->m)) return PyErr_Format(PyExc_ValueError, "symbol %zd out of range", y);
    lane_observe(mo->m, (int32_t)y);
    Py_RETURN_NONE;
}

static PyMethodDef testing_methods[] = {
    {"set_simd", py_set_simd, METH_O,
     "set_simd(on) -> bool: use the AVX2 kernels (when the CPU has them) or the scalar reference "
     "loops; returns whether AVX2 is now in use. The results are bit-identical either way."},
    {"det_exp", py_det_exp, METH_O, "det_exp(x) -> float: the fixed exp used for CDFs, x in [-32, 0]."},
    {"distribution", py_distribution, METH_VARARGS,
     "distribution(model, logits) -> bytes\n\nfloat64[n_vocab + 1] probabilities the LaneModel's "
     "next CDF is made from (the last: escape), without learning."},
    {"observe", py_observe, METH_VARARGS,
     "observe(model, symbol)\n\nUpdate the LaneModel's n-gram head and history without coding."},
    {NULL}};

static struct PyModuleDef testingdef = {
    PyModuleDef_HEAD_INIT, "nacrith._native._testing",
    "Test-only entry points of nacrith._native (not part of the API): kernel selection, the fixed "
    "exp, a lane model's distribution and an update without coding.", -1, testing_methods};

/* ---------------------------------------------------------------------- module */
static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "nacrith._native",
    "Bit-exact core of nacrith: CDF quantisation (2^24 total), a 32-bit arithmetic coder, and the "
    "per-lane ensemble model whose CDFs it codes.", -1, module_methods};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&EncoderType) < 0 || PyType_Ready(&DecoderType) < 0 ||
        PyType_Ready(&LaneModelType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    simd_init();
    PyObject *t = PyModule_Create(&testingdef);
    Py_INCREF(&EncoderType);
    Py_INCREF(&DecoderType);
    Py_INCREF(&LaneModelType);
    if (!t || PyModule_AddObject(m, "_testing", t) ||
        PyModule_AddObject(m, "Encoder", (PyObject *)&EncoderType) ||
        PyModule_AddObject(m, "Decoder", (PyObject *)&DecoderType) ||
        PyModule_AddObject(m, "LaneModel", (PyObject *)&LaneModelType) ||
        PyModule_AddIntConstant(m, "PRECISION", PREC) ||
        PyModule_AddIntConstant(m, "CDF_TOTAL", CDF_TOTAL)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
