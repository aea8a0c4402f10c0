"""Pure parameter records of the LLM path, as written to the stream (no numpy, llama.cpp or
native import, so the format layer ``nacrith.container`` can parse them anywhere).

* ``Window``: the sliding KV-cache window of a lane (``nacrith.lanes`` runs it).
* ``EnsembleParams``: hyper-parameters of the ensemble heads (``nacrith.ensemble`` builds the
  native per-lane models from them; ``codec/FORMAT.md``, parameter ``0x05``).

Sources: Nacrith paper (token n-gram interpolated low to high with lambda = c / (c + 5), bias
``b -= lr (p' - onehot)``, Hedge mixing lr 0.5 with initial LLM weight 0.85, skip below 1.5 bits);
geometric (log-linear) mixing with weight sets selected by a small context follows the PAQ
family of context-mixing compressors (M. Mahoney, "Adaptive weighing of context models for
lossless data compression", 2005).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """Sliding KV-cache window of a lane, in tokens.

    size: most positions held (C); sink: leading positions never evicted (S);
    slide: positions evicted at once when the window is full (B).
    """

    size: int = 2048
    sink: int = 4
    slide: int = 512

    def __post_init__(self):
        if not (1 <= self.sink and 1 <= self.slide and self.sink + self.slide <= self.size):
            raise ValueError(f"bad window: need 1 <= sink, 1 <= slide, sink + slide <= size ({self})")
        if self.size > 1 << 20:
            raise ValueError(f"window size {self.size} too large")


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
    shared_heads: the lanes of a frame share one set of heads (n-gram tables, bias, mixer
        weights, escape models), updated lane by lane at every step; otherwise each lane has
        its own. Sharing lets every lane learn from the whole frame (measured: bench/results/).
    match_min: match model: the last ``match_min`` tokens are hashed to find the longest earlier
        occurrence in the frame, whose next token gets a learnt boost (0: off; codec/FORMAT.md,
        "Match model"). match_bits: log2 of its hash table slots (8 bytes each, per frame).
        match_lr: learning rate of the boost.
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
    shared_heads: bool = True
    # off unless named: streams without these fields (version 1, presets 1 and 2) have no match
    # model; the default level turns it on (preset 3, DEFAULT_ENSEMBLE)
    match_min: int = 0
    match_bits: int = 18
    match_lr: float = 0.02

    def __post_init__(self):
        if not (0 <= self.ngram_order <= 8 and 4 <= self.ngram_bits <= 26 and self.ngram_kappa > 0
                and 0 <= self.bias_lr < 1 and self.mixer in MIXER_NAMES and 0 <= self.mix_lr <= 10
                and 0 <= self.mix_init <= 1 and 0 <= self.skip_bits < 64
                and (self.match_min == 0 or 2 <= self.match_min <= 32) and 8 <= self.match_bits <= 26
                and 0 <= self.match_lr <= 1):
            raise ValueError(f"ensemble parameter out of range: {self}")

    def memory_per_lane(self, n_vocab: int) -> int:
        """Bytes of state of one lane model."""
        return (self.ngram_order * (72 << self.ngram_bits) + n_vocab * (20 + (8 if self.bias_lr else 0))
                + (8 << self.match_bits if self.match_min else 0))

    def encode(self) -> bytes:
        return _FMT.pack(self.ngram_order, self.ngram_bits, self.mixer, int(self.shared_heads),
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
        if self.match_min:
            heads.append(f"match model min {self.match_min} (2^{self.match_bits} slots, lr {self.match_lr:g})")
        if heads and self.shared_heads:
            heads.append("heads shared by lanes")
        return ", ".join(heads) or "LLM only"


LLM_ONLY = EnsembleParams(ngram_order=0, bias_lr=0.0, mixer=MIXER_LINEAR, skip_bits=0.0)

# Format v2 (codec/FORMAT.md, "Params block"): the ensemble arithmetic is named by an algorithm
# id (bump it, keeping the old one decodable, whenever the arithmetic changes), and common
# settings by preset ids. Presets are frozen: never edit one, append a new id. A field that a
# preset does not name takes its dataclass default, so a field added later must default to
# what the preset's algorithm did without it.
ENSEMBLE_ALGORITHM = 1
WINDOW_PRESETS = {1: Window(1024, 4, 256), 2: Window(2048, 4, 512), 3: Window(256, 4, 64), 4: Window(512, 4, 128),
                  5: Window(4096, 4, 1024),  # 3..5: the windows of the compression levels
                  6: Window(8192, 4, 2048)}  # the widest window of levels 6..9 (Options.frame_window)
ENSEMBLE_PRESETS = {
    1: dict(ngram_order=4, ngram_bits=16, ngram_kappa=5.0, bias_lr=0.08, mixer=MIXER_GEOMETRIC,
            mix_lr=0.002, mix_init=0.85, skip_bits=0.0, shared_heads=True),
    2: dict(ngram_order=0, ngram_bits=16, ngram_kappa=5.0, bias_lr=0.0, mixer=MIXER_LINEAR,
            mix_lr=0.002, mix_init=0.85, skip_bits=0.0, shared_heads=True),  # LLM_ONLY
    # preset 1 + the match model (measured: html x 4 -53 %, cp.html -1.7 %, alice29 +-0;
    # bench/results/ensemble.md)
    3: dict(ngram_order=4, ngram_bits=16, ngram_kappa=5.0, bias_lr=0.08, mixer=MIXER_GEOMETRIC,
            mix_lr=0.002, mix_init=0.85, skip_bits=0.0, shared_heads=True, match_min=4, match_bits=18,
            match_lr=0.05),
}
DEFAULT_ENSEMBLE = EnsembleParams(**ENSEMBLE_PRESETS[3])
"""The ensemble of the default level (``Options().ensemble``)."""
