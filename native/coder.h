/*
 * 32-bit binary arithmetic coder (Witten-Neal-Cleary with pending bits) over integer CDFs of
 * total 2^24 (cdf.h). The coder knows nothing of the models: each call takes the model of one
 * symbol as its CDF (cdf[0] = 0, cdf[n] = 2^24, non-decreasing, n + 1 entries), from whichever
 * model made it (cdf.c for logits, ensemble.c for the lane models). Invariants: native/NOTES.md,
 * "Coder invariants".
 */
#ifndef NACRITH_CODER_H
#define NACRITH_CODER_H

#include <stddef.h>
#include <stdint.h>

/* error codes of ac_encode / ac_finish */
#define AC_ENOMEM (-1)    /* the output buffer could not grow */
#define AC_EFINISHED (-2) /* ac_finish was called */
#define AC_ESYMBOL (-3)   /* symbol outside [0, n) */
#define AC_EZERO (-4)     /* symbol with zero frequency */

typedef struct {
    uint64_t low, high; /* current interval [low, high], both < 2^32 */
    uint64_t pending;   /* bits waiting for the resolution of an E3 straddle */
    uint8_t *buf;       /* completed bytes (malloc'd) */
    ptrdiff_t len, cap;
    uint32_t bitacc; /* bits of the byte in progress */
    int nbits;
    int finished;
    ptrdiff_t nsym; /* symbols encoded */
} ac_encoder;

typedef struct {
    uint64_t low, high, value;
    const uint8_t *data; /* not owned: must outlive the decoder */
    ptrdiff_t len;
    ptrdiff_t bitpos;  /* next bit to read */
    ptrdiff_t overrun; /* bits read past the end (read as 0) */
    ptrdiff_t nsym;    /* symbols decoded */
} ac_decoder;

void ac_encoder_init(ac_encoder *e);
void ac_encoder_free(ac_encoder *e);
/* Encode sym in [0, n) with the model cdf[0..n]. Returns 0 or an AC_E* code. */
int ac_encode(ac_encoder *e, const uint32_t *cdf, ptrdiff_t n, ptrdiff_t sym);
/* Flush the final interval (idempotent); the stream is then e->buf[0..e->len). 0 or AC_ENOMEM. */
int ac_finish(ac_encoder *e);

/* Starts reading data[0..len) (the 32-bit look-ahead). */
void ac_decoder_init(ac_decoder *d, const uint8_t *data, ptrdiff_t len);
/* The symbol in [0, n) coded with the model cdf[0..n]. */
ptrdiff_t ac_decode(ac_decoder *d, const uint32_t *cdf, ptrdiff_t n);
/* Bits consumed past the end of the data beyond the 32-bit look-ahead (0 for a valid stream). */
ptrdiff_t ac_overrun(const ac_decoder *d);

#endif
