/*
 * The arithmetic coder (coder.h): integer arithmetic only, so it is exact everywhere.
 * Source: I. H. Witten, R. M. Neal, J. G. Cleary, "Arithmetic coding for data compression",
 * CACM 30(6), 1987; the interval split uses the exact product low + floor(range * cdf / 2^24).
 */
#include "coder.h"

#include <stdlib.h>
#include <string.h>

#include "cdf.h" /* PREC */

#define HALF 0x80000000ull
#define QUARTER 0x40000000ull
#define TOPMASK 0xFFFFFFFFull

void ac_encoder_init(ac_encoder *e) {
    memset(e, 0, sizeof(*e));
    e->high = TOPMASK;
}

void ac_encoder_free(ac_encoder *e) {
    free(e->buf);
    e->buf = NULL;
    e->len = e->cap = 0;
}

static int enc_putbit(ac_encoder *e, int bit) {
    e->bitacc = (e->bitacc << 1) | (uint32_t)bit;
    if (++e->nbits == 8) {
        if (e->len == e->cap) {
            ptrdiff_t ncap = e->cap ? e->cap * 2 : 4096;
            uint8_t *nb = realloc(e->buf, (size_t)ncap);
            if (!nb) return AC_ENOMEM;
            e->buf = nb;
            e->cap = ncap;
        }
        e->buf[e->len++] = (uint8_t)e->bitacc;
        e->bitacc = 0;
        e->nbits = 0;
    }
    return 0;
}

static int enc_emit(ac_encoder *e, int bit) {
    if (enc_putbit(e, bit)) return AC_ENOMEM;
    for (; e->pending; e->pending--)
        if (enc_putbit(e, !bit)) return AC_ENOMEM;
    return 0;
}

int ac_encode(ac_encoder *e, const uint32_t *cdf, ptrdiff_t n, ptrdiff_t sym) {
    if (e->finished) return AC_EFINISHED;
    if (sym < 0 || sym >= n) return AC_ESYMBOL;
    uint32_t clo = cdf[sym], chi = cdf[sym + 1];
    if (chi <= clo) return AC_EZERO;
    uint64_t range = e->high - e->low + 1; /* in (2^30, 2^32] */
    uint64_t nhigh = e->low + ((range * chi) >> PREC) - 1;
    uint64_t nlow = e->low + ((range * clo) >> PREC);
    e->low = nlow;
    e->high = nhigh;
    /* width >= floor(range * 1 / 2^24) >= 64 > 0 */
    for (;;) {
        if (e->high < HALF) {
            if (enc_emit(e, 0)) return AC_ENOMEM;
        } else if (e->low >= HALF) {
            if (enc_emit(e, 1)) return AC_ENOMEM;
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

int ac_finish(ac_encoder *e) {
    if (!e->finished) {
        /* two more bits pin a point inside [low, high] whatever bits follow (zeros) */
        e->pending++;
        if (enc_emit(e, e->low < QUARTER ? 0 : 1)) return AC_ENOMEM;
        while (e->nbits)
            if (enc_putbit(e, 0)) return AC_ENOMEM;
        e->finished = 1;
    }
    return 0;
}

static int dec_bit(ac_decoder *d) {
    ptrdiff_t byte = d->bitpos >> 3;
    int bit = 0;
    if (byte < d->len) bit = (d->data[byte] >> (7 - (d->bitpos & 7))) & 1;
    else d->overrun++;
    d->bitpos++;
    return bit;
}

void ac_decoder_init(ac_decoder *d, const uint8_t *data, ptrdiff_t len) {
    memset(d, 0, sizeof(*d));
    d->data = data;
    d->len = len;
    d->high = TOPMASK;
    for (int i = 0; i < 32; i++) d->value = (d->value << 1) | (uint64_t)dec_bit(d);
}

ptrdiff_t ac_decode(ac_decoder *d, const uint32_t *cdf, ptrdiff_t n) {
    uint64_t range = d->high - d->low + 1;
    /* largest s with low + floor(range * cdf[s] / 2^24) <= value: the map is non-decreasing in
       s and strictly increasing across every symbol (each has width >= 64) */
    ptrdiff_t lo = 0, hi = n;
    while (hi - lo > 1) {
        ptrdiff_t mid = (lo + hi) >> 1;
        if (d->low + ((range * cdf[mid]) >> PREC) <= d->value) lo = mid;
        else hi = mid;
    }
    ptrdiff_t s = lo;
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

ptrdiff_t ac_overrun(const ac_decoder *d) {
    ptrdiff_t extra = d->overrun - 32;
    return extra > 0 ? extra : 0;
}
