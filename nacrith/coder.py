"""Arithmetic coding over 2^24-total CDFs, and the CDF construction.

Precision preset (stated once, used everywhere): 32-bit coder state, 24-bit probabilities
(``CDF_TOTAL = 2**24``), every symbol at least 1 count.

* ``Encoder`` / ``Decoder`` are the native (C) coder (``native/coder.c``). The coder takes the
  model: ``encode(cdf, symbol)`` / ``decode(cdf)`` code one symbol with its CDF, and
  ``encode_step(model, logits, symbol, raw)`` / ``decode_step(model, logits)`` one step of a lane
  model (``nacrith.ensemble``) with the CDFs that model makes.
* ``cdf_from_logits`` / ``cdf_from_probs`` build the integer CDF deterministically
  (``native/cdf.c``, ``native/NOTES.md`` for the construction and its worst-case overhead,
  -log2(1 - n/2^24) bits per symbol: 0.0042 bit for n = 49,152).
* ``RefEncoder`` / ``RefDecoder`` are a pure-Python transcription of the same algorithm, used by
  the tests to check the native coder byte for byte.

Source: I. H. Witten, R. M. Neal, J. G. Cleary, "Arithmetic coding for data compression",
CACM 30(6), 1987 (interval renormalisation with pending bits); the interval split uses the exact
product ``low + floor(range * cdf / 2^24)`` instead of a truncated ``range // total``.
"""

from __future__ import annotations

import numpy as np

from . import _native

PRECISION = _native.PRECISION  # 24
CDF_TOTAL = _native.CDF_TOTAL  # 2**24
Encoder = _native.Encoder
Decoder = _native.Decoder


def cdf_from_logits(logits: np.ndarray) -> np.ndarray:
    """Quantised softmax of float32 ``logits`` (shape (n,)) as a uint32 CDF of shape (n + 1,).

    cdf[0] = 0, cdf[n] = 2**24, cdf[i+1] - cdf[i] >= 1. Deterministic on every machine.
    """
    lg = np.ascontiguousarray(logits, dtype=np.float32)
    cdf = np.empty(lg.shape[0] + 1, dtype=np.uint32)
    _native.cdf_from_logits(lg, cdf)
    return cdf


def cdf_from_probs(probs: np.ndarray) -> np.ndarray:
    """Integer CDF (uint32, shape (n + 1,), total 2**24) of float64 weights ``probs`` (shape (n,)).

    Weights need not be normalised; negative or NaN weights count as 0 (floor count 1).
    """
    p = np.ascontiguousarray(probs, dtype=np.float64)
    cdf = np.empty(p.shape[0] + 1, dtype=np.uint32)
    _native.cdf_from_probs(p, cdf)
    return cdf


def softmax(logits: np.ndarray) -> np.ndarray:
    """Deterministic softmax (float64, same shape as the float32 ``logits``)."""
    lg = np.ascontiguousarray(logits, dtype=np.float32)
    out = np.empty(lg.shape, dtype=np.float64)
    _native.softmax(lg, out)
    return out


_HALF = 1 << 31
_QUARTER = 1 << 30
_MASK = (1 << 32) - 1


class RefEncoder:
    """Pure-Python reference of ``Encoder`` (same bytes for the same symbols and CDFs)."""

    def __init__(self):
        self.low, self.high, self.pending = 0, _MASK, 0
        self.bits: list[int] = []

    def _emit(self, bit: int) -> None:
        self.bits.append(bit)
        self.bits.extend([1 - bit] * self.pending)
        self.pending = 0

    def encode(self, cdf, sym: int) -> None:
        rng = self.high - self.low + 1
        lo, hi = int(cdf[sym]), int(cdf[sym + 1])
        assert hi > lo, "zero-frequency symbol"
        self.high = self.low + ((rng * hi) >> PRECISION) - 1
        self.low = self.low + ((rng * lo) >> PRECISION)
        while True:
            if self.high < _HALF:
                self._emit(0)
            elif self.low >= _HALF:
                self._emit(1)
                self.low -= _HALF
                self.high -= _HALF
            elif self.low >= _QUARTER and self.high < _HALF + _QUARTER:
                self.pending += 1
                self.low -= _QUARTER
                self.high -= _QUARTER
            else:
                break
            self.low = (self.low << 1) & _MASK
            self.high = ((self.high << 1) & _MASK) | 1

    def finish(self) -> bytes:
        self.pending += 1
        self._emit(0 if self.low < _QUARTER else 1)
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))


class RefDecoder:
    """Pure-Python reference of ``Decoder``."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.low, self.high, self.value = 0, _MASK, 0
        for _ in range(32):
            self.value = (self.value << 1) | self._bit()

    def _bit(self) -> int:
        byte = self.pos >> 3
        b = (self.data[byte] >> (7 - (self.pos & 7))) & 1 if byte < len(self.data) else 0
        self.pos += 1
        return b

    def decode(self, cdf) -> int:
        rng = self.high - self.low + 1
        lo, hi = 0, len(cdf) - 1
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if self.low + ((rng * int(cdf[mid])) >> PRECISION) <= self.value:
                lo = mid
            else:
                hi = mid
        s = lo
        self.high = self.low + ((rng * int(cdf[s + 1])) >> PRECISION) - 1
        self.low = self.low + ((rng * int(cdf[s])) >> PRECISION)
        while True:
            if self.high < _HALF:
                pass
            elif self.low >= _HALF:
                self.low -= _HALF
                self.high -= _HALF
                self.value -= _HALF
            elif self.low >= _QUARTER and self.high < _HALF + _QUARTER:
                self.low -= _QUARTER
                self.high -= _QUARTER
                self.value -= _QUARTER
            else:
                break
            self.low = (self.low << 1) & _MASK
            self.high = ((self.high << 1) & _MASK) | 1
            self.value = ((self.value << 1) & _MASK) | self._bit()
        return s
