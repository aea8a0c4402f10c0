"""Pure parameter records of the LLM path, as written to the stream (no numpy, llama.cpp or
native import, so the format layer ``nacrith.format`` can parse them anywhere).

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
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class Setting:
    """How a recorded setting is validated and offered on the command line, defined once beside
    its field (``dataclasses.field(metadata={"setting": Setting(...)})``): the CLI's options
    (``nacrith.cli.options``), the range checks of ``__post_init__`` and the native keyword
    arguments (``nacrith.ensemble``) are all made from it.

    flag: the option (``--ngram-order``; ``--a/--b`` for a boolean). lo, hi: the range (None: no
    bound); lo_open, hi_open: bounds excluded. choices: value -> name (an option by name).
    also: a value allowed outside the range (``match_min`` 0). native: passed to the native
    LaneModel under its field name. level: the compression level gives its default (CLI default
    None)."""

    flag: str
    help: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: dict | None = None
    also: tuple = ()
    native: bool = True
    level: bool = False

    def check(self, name: str, v) -> None:
        """Raise ValueError (TypeError for a wrong type) unless ``v`` is a valid value."""
        if isinstance(v, bool) and self.lo is not None:
            raise TypeError(f"{name} must be a number, not bool")
        if v in self.also:
            return
        if self.choices is not None:
            if v not in self.choices:
                raise ValueError(f"{name} must be one of {sorted(self.choices)}, not {v!r}")
            return
        if self.lo is None and self.hi is None:
            return
        if not isinstance(v, (int, float)) or v != v:
            raise ValueError(f"{name} must be a number, not {v!r}")
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            raise ValueError(f"{name} = {v} out of range ({self.describe_range()})")
        if self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)):
            raise ValueError(f"{name} = {v} out of range ({self.describe_range()})")

    def describe_range(self) -> str:
        lo = "" if self.lo is None else f"{self.lo:g} {'<' if self.lo_open else '<='} "
        hi = "" if self.hi is None else f" {'<' if self.hi_open else '<='} {self.hi:g}"
        extra = "".join(f" or {a}" for a in self.also)
        return f"{lo}x{hi}{extra}"


def setting(default, flag: str, help: str, **kw):
    """A dataclass field with its ``Setting`` (see there)."""
    return field(default=default, metadata={"setting": Setting(flag, help, **kw)})


def settings_of(cls) -> list[tuple[str, object, Setting]]:
    """(field name, default, Setting) of every field of ``cls`` that has one, in field order."""
    return [(f.name, f.default, f.metadata["setting"]) for f in fields(cls) if "setting" in f.metadata]


def check_settings(obj) -> None:
    """Check every field of a settings dataclass against its ``Setting``."""
    for name, _, st in settings_of(type(obj)):
        st.check(name, getattr(obj, name))


@dataclass(frozen=True)
class Window:
    """Sliding KV-cache window of a lane, in tokens.

    size: most positions held (C); sink: leading positions never evicted (S);
    slide: positions evicted at once when the window is full (B).
    """

    size: int = setting(2048, "--window", "KV-cache window per lane, tokens", lo=8, hi=1 << 20, level=True)
    sink: int = setting(4, "--sink", "Leading tokens never evicted from the window", lo=1, level=True)
    slide: int = setting(512, "--slide", "Tokens evicted at once when the window is full", lo=1, level=True)

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
    ngram_order: int = setting(4, "--ngram-order", "Highest token n-gram order (0: n-gram head off).", lo=0, hi=8)
    ngram_bits: int = setting(16, "--ngram-bits", "log2 hashed contexts per n-gram order (memory per lane: "
                              "order x 2^bits x 72 B).", lo=4, hi=26)
    ngram_kappa: float = setting(5.0, "--ngram-kappa", "n-gram interpolation constant: lambda = c / (c + kappa).",
                                 lo=0, lo_open=True)
    bias_lr: float = setting(0.08, "--bias-lr", "Learning rate of the log-space bias head (0: off).", lo=0, hi=1,
                             hi_open=True)
    mixer: int = setting(MIXER_GEOMETRIC, "--mixer", "Context mixer: linear (Hedge) or geometric (log-linear).",
                         choices=MIXER_NAMES)
    mix_lr: float = setting(0.002, "--mix-lr", "Mixer learning rate.", lo=0, hi=10)
    mix_init: float = setting(0.85, "--mix-init", "Initial LLM weight of the mixer.", lo=0, hi=1)
    # measured: 0.5 bit skips 1.8 % of tokens, +0.08 % size, no speed-up
    skip_bits: float = setting(0.0, "--skip-bits", "Skip the LLM when the n-gram entropy is below this (0: never).",
                               lo=0, hi=64, hi_open=True)
    shared_heads: bool = setting(True, "--shared-heads/--lane-heads", "The lanes of a frame share one set of "
                                 "ensemble heads, or each lane has its own.", native=False)
    # off unless named: streams without these fields (version 1, presets 1 and 2) have no match
    # model; the default level turns it on (preset 3, DEFAULT_ENSEMBLE)
    match_min: int = setting(0, "--match-min", "Match model: tokens hashed to find the longest earlier "
                             "occurrence (0: off; else >= 2).", lo=2, hi=32, also=(0,))
    match_bits: int = setting(18, "--match-bits", "log2 hash slots of the match model (8 B each, per frame).",
                              lo=8, hi=26)
    match_lr: float = setting(0.02, "--match-lr", "Learning rate of the match model's boost.", lo=0, hi=1)

    def __post_init__(self):
        try:
            check_settings(self)
        except (TypeError, ValueError) as e:
            raise ValueError(f"ensemble parameter out of range: {e}") from None

    def native_kwargs(self) -> dict:
        """The keyword arguments of the native ``LaneModel`` (its kwlist names these fields)."""
        return {name: getattr(self, name) for name, _, st in settings_of(type(self)) if st.native}

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


@dataclass(frozen=True)
class Attention:
    """The attention settings of a llama.cpp context: flash attention (LLAMA_FLASH_ATTN_TYPE_*:
    -1 auto, 0 off, 1 on) and the ggml types of the K and V cache (names of ``GGML_TYPES``).
    They change the logits, so they are part of the backend fingerprint (``nacrith.backend``)."""

    flash: int = 1
    k: str = "q8_0"
    v: str = "q8_0"
    kernel: str = ""  # "": llama.cpp's own kernels; else the patched kernel's marker (native/llama/)

    @property
    def name(self) -> str:
        """``q8_0`` (K and V of one type) or ``q8_0/bf16`` (K/V); ``nofa-`` prefix when FA is off;
        ``+kernel`` when it needs nacrith's patched attention kernel."""
        kv = self.k if self.k == self.v else f"{self.k}/{self.v}"
        name = kv if self.flash == 1 else f"{'nofa' if self.flash == 0 else 'autofa'}-{kv}"
        return f"{name}+{self.kernel}" if self.kernel else name

    def fingerprint(self) -> str:
        """The part of the backend fingerprint (``fa=1 kv=q8_0``, as streams of format 1 have it;
        `` kernel=MARKER`` for the patched kernel)."""
        kv = self.k if self.k == self.v else f"{self.k}/{self.v}"
        return f"fa={self.flash} kv={kv}" + (f" kernel={self.kernel}" if self.kernel else "")


Q8_ATTENTION = Attention(1, "q8_0", "q8_0")
"""The settings of every stream before the attention mode became selectable (backend preset 1)."""
FAST_KERNEL = "nacrith-fa-1"
FAST_ATTENTION = Attention(1, "f16", "bf16", FAST_KERNEL)
"""f16 K, bf16 V, through nacrith's patched flash-attention kernel (native/llama/README.md)."""
ATTENTION_MODES = {a.name: a for a in (Q8_ATTENTION, FAST_ATTENTION)}
"""Batch-invariant attention settings a stream may name (``tests/test_kernels_invariance.py`` checks each)."""
DEFAULT_ATTENTION = Q8_ATTENTION
