"""Ensemble hyper-parameters and the per-lane model built from them.

The heads themselves run in native code (``native/ensemble.c``: token n-gram head, online
log-space bias head, context mixer, confidence skip) so that both sides compute bit-identical
probabilities. This module holds their parameters, which are written to every stream
(``codec/FORMAT.md``, parameter ``0x05``) and read back by the decoder.

Sources: Nacrith paper (token n-gram interpolated low to high with lambda = c / (c + 5), bias
``b -= lr (p' - onehot)``, Hedge mixing lr 0.5 with initial LLM weight 0.85, skip below 1.5 bits);
geometric (log-linear) mixing with weight sets selected by a small context follows the PAQ
family of context-mixing compressors (M. Mahoney, "Adaptive weighing of context models for
lossless data compression", 2005).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from . import _native

MIXER_LINEAR = 0  # Hedge: w_i *= P_i(y)^lr
MIXER_GEOMETRIC = 1  # p ~ L'^a P_ng^c, online gradient descent on the code length
MIXER_NAMES = {MIXER_LINEAR: "linear", MIXER_GEOMETRIC: "geometric"}

_FMT = struct.Struct("<BBBB5d")


@dataclass(frozen=True)
class EnsembleParams:
    """Hyper-parameters of the ensemble (all recorded in the stream).

    ngram_order: highest token n-gram order K (0: n-gram head off; also disables skip).
    ngram_bits: log2 of hashed context slots per order (memory per lane:
        ``K * 2**bits * 72`` bytes). ngram_kappa: interpolation constant, lambda = c/(c+kappa).
    bias_lr: learning rate of the log-space bias head (0: off).
    mixer: MIXER_LINEAR or MIXER_GEOMETRIC; mix_lr: its learning rate; mix_init: initial LLM
        weight (linear) or 1 - initial n-gram exponent (geometric).
    skip_bits: skip the LLM when the n-gram head's entropy is below this many bits (0: never).
    shared_lanes: the lanes of a frame share one set of heads (n-gram tables, bias, mixer
        weights, escape models), updated lane by lane at every step; otherwise each lane has
        its own. Sharing lets every lane learn from the whole frame (measured: bench/results/).
    """

    # defaults measured on alice29.txt and enwik6 (bench/results/ensemble.md)
    ngram_order: int = 4
    ngram_bits: int = 16
    ngram_kappa: float = 5.0
    bias_lr: float = 0.08
    mixer: int = MIXER_GEOMETRIC
    mix_lr: float = 0.002
    mix_init: float = 0.85
    skip_bits: float = 0.0  # measured: 0.5 bit skips 1.8 % of tokens, +0.08 % size, no speed-up
    shared_lanes: bool = True

    def __post_init__(self):
        if not (0 <= self.ngram_order <= 8 and 4 <= self.ngram_bits <= 26 and self.ngram_kappa > 0
                and 0 <= self.bias_lr < 1 and self.mixer in MIXER_NAMES and 0 <= self.mix_lr <= 10
                and 0 <= self.mix_init <= 1 and 0 <= self.skip_bits < 64):
            raise ValueError(f"ensemble parameter out of range: {self}")

    def _kwargs(self) -> dict:
        return dict(ngram_order=self.ngram_order, ngram_kappa=self.ngram_kappa,
                    bias_lr=self.bias_lr, mixer=self.mixer, mix_lr=self.mix_lr,
                    mix_init=self.mix_init, skip_bits=self.skip_bits)

    def lane_model(self, n_vocab: int, shared=None) -> "_native.LaneModel":
        """A fresh per-lane model (state starts empty at every frame), sharing the heads of
        ``shared`` (another lane's model) when given."""
        return _native.LaneModel(n_vocab, ngram_bits=self.ngram_bits, shared=shared, **self._kwargs())

    def lane_models(self, n_vocab: int, n: int) -> list:
        """Models for the ``n`` lanes of a frame: sharing heads when ``shared_lanes``."""
        first = self.lane_model(n_vocab)
        return [first] + [self.lane_model(n_vocab, first if self.shared_lanes else None) for _ in range(n - 1)]

    def memory_per_lane(self, n_vocab: int) -> int:
        """Bytes of state of one lane model."""
        return self.ngram_order * (72 << self.ngram_bits) + n_vocab * (20 + (8 if self.bias_lr else 0))

    def encode(self) -> bytes:
        return _FMT.pack(self.ngram_order, self.ngram_bits, self.mixer, int(self.shared_lanes),
                         self.ngram_kappa, self.bias_lr, self.mix_lr, self.mix_init, self.skip_bits)

    @classmethod
    def decode(cls, b: bytes) -> "EnsembleParams":
        """Parse the 44-byte parameter value. Raises ValueError on bad sizes or ranges."""
        if len(b) != _FMT.size:
            raise ValueError(f"ensemble parameters have {len(b)} bytes, expected {_FMT.size}")
        order, bits, mixer, flags, kappa, blr, mlr, minit, skip = _FMT.unpack(b)
        if flags & ~1:
            raise ValueError(f"reserved ensemble flag bits set (0x{flags:02x})")
        return cls(order, bits, kappa, blr, mixer, mlr, minit, skip, bool(flags & 1))

    def describe(self) -> str:
        heads = []
        if self.ngram_order:
            heads.append(f"n-gram 1..{self.ngram_order} (2^{self.ngram_bits} slots, kappa {self.ngram_kappa:g})")
        if self.bias_lr:
            heads.append(f"bias lr {self.bias_lr:g}")
        if self.ngram_order:
            heads.append(f"{MIXER_NAMES[self.mixer]} mixer lr {self.mix_lr:g} init {self.mix_init:g}")
        if self.skip_bits and self.ngram_order:
            heads.append(f"skip < {self.skip_bits:g} bits")
        if heads and self.shared_lanes:
            heads.append("heads shared by lanes")
        return ", ".join(heads) or "LLM only"


LLM_ONLY = EnsembleParams(ngram_order=0, bias_lr=0.0, mixer=MIXER_LINEAR, skip_bits=0.0)
