"""What an encoder chooses (pure: no numpy, llama.cpp or native import).

* ``Options``: the settings of a compression, recorded in the stream where the decoder needs them
  (window, ensemble, lanes) and execution choices that change no bit (batch, verify).
* ``LEVELS``: the compression levels, presets of recorded settings (``Options.from_level``).
* ``Execution``: how the LLM is run where that changes no bit (drafts); the Engine holds one.

Each setting's range, flag and help are defined once, beside its field (``nacrith.params.setting``):
the command line's options are made from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .format import MAX_FRAME_SIZE, MAX_LANES
from .params import ATTENTION_MODES, DEFAULT_ENSEMBLE, EnsembleParams, Window, check_settings, setting


@dataclass(frozen=True)
class Options:
    """Encoder choices. Those the decoder needs are written to the stream header.

    window: sliding KV window per lane (tokens). ensemble: n-gram / bias / mixer / skip
    hyper-parameters (``EnsembleParams``; ``LLM_ONLY`` turns every head off).
    frame_size: most input bytes per frame.
    max_lanes: most lanes per frame; min_lane_tokens: a frame gets
    ``clamp(tokens // min_lane_tokens, 1, max_lanes)`` lanes. batch: tokens per llama_decode
    call when encoding (execution only; the logits do not depend on it).
    info: also record the model's name and the writer's version in the stream (informational,
    about 40 bytes; ``nacrith -l`` otherwise names a preset model from its id).
    kv_budget: KV cells one decode step may attend to across a frame's lanes: a frame of L
    lanes whose longest lane outgrows ``window`` gets the wider window ``Options.frame_window``
    picks (up to ``kv_budget / L`` tokens and the model's training context), so a small file of
    few lanes gets the long context its size makes affordable; 0: always ``window`` (pass it
    with a ``window`` meant for every frame: ``window`` alone is widened like the level's). An encoder
    choice: the window used is recorded per frame (the params in force), so decoders need none.
    attention: name of the llama.cpp attention settings (``nacrith.model.ATTENTION_MODES``:
    flash attention, K and V cache types, kernel); ``None``: the build's fastest
    (``nacrith.model.default_attention``). Recorded through the backend fingerprint.
    schedule: how the LLM is evaluated: ``None`` (the session decides: ``batched`` where
    ``nacrith.probe`` proved this model bit-exact under batching on this build, else
    ``lockstep``), ``lockstep`` (one token per lane per step on both sides: always lossless, slower)
    or ``batched`` (refused unless proven). Recorded in the stream.
    verify: decode every LLM frame right after coding it and keep it only if it gives the input
    back (a frame that does not is coded as a binary frame instead); costs a decode.
    """

    window: Window = field(default_factory=lambda: Window(1024, 4, 256))
    ensemble: EnsembleParams = DEFAULT_ENSEMBLE
    frame_size: int = setting(1 << 20, "--frame-size", "Most input bytes per frame.", lo=1, hi=MAX_FRAME_SIZE)
    max_lanes: int = setting(8, "--lanes", "Most lanes per frame (decoded together, one token per lane per step)",
                             lo=1, hi=MAX_LANES, level=True)
    # alice29 50 KB: 1 lane 1.1395 bpb, 3 lanes 1.1488, 6 lanes 1.164
    min_lane_tokens: int = setting(8192, "--lane-tokens", "Fewest tokens per lane", lo=1, level=True)
    batch: int = 256
    # alice29 50 KB, one lane: window 1024 1.1006 bpb, 8192 1.0821 (README)
    kv_budget: int = setting(8192, "--kv-budget", "KV cells a decode step may attend to across a frame's lanes: "
                             "a frame of few lanes gets a window up to this / lanes tokens and the model's "
                             "training context (0: always --window)", lo=0, hi=1 << 20, level=True)
    info: bool = setting(False, "--info", "Also record the model name and nacrith version in the stream (~40 bytes).")
    attention: str | None = None
    schedule: str | None = None
    verify: bool = setting(False, "--verify", "Decode every LLM frame right after coding it; one that does not "
                           "give its input back is written as a binary frame (--rm also decodes the whole output).")

    def __post_init__(self):
        if self.schedule not in (None, "batched", "lockstep"):
            raise ValueError(f"schedule must be None, 'batched' or 'lockstep', not {self.schedule!r}")
        if not isinstance(self.verify, bool):
            raise TypeError(f"verify must be a bool, not {type(self.verify).__name__}")
        if self.attention is not None and self.attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_MODES)}, not {self.attention!r}")
        if not isinstance(self.window, Window):
            raise TypeError(f"window must be a nacrith.Window, not {type(self.window).__name__}")
        if not isinstance(self.ensemble, EnsembleParams):
            raise TypeError(f"ensemble must be a nacrith.EnsembleParams, not {type(self.ensemble).__name__}")
        for name in ("frame_size", "max_lanes", "min_lane_tokens", "batch", "kv_budget"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name} must be an int, not {type(v).__name__}")
        check_settings(self)
        if self.batch < 1:
            raise ValueError("batch must be >= 1")

    def frame_window(self, lanes: int, longest: int, n_ctx_train: int = 0) -> Window:
        """The KV window of a frame of ``lanes`` lanes whose longest lane has ``longest`` tokens.

        ``window`` when ``kv_budget`` is 0 or the lane fits in it (then every wider window codes
        the same bits); otherwise the largest power of two ``W <= kv_budget / lanes`` (and
        ``<= n_ctx_train``, the model's training context, when > 0), if above ``window.size``,
        with the same sink and a slide of the same fraction of the window
        (``window.slide * W / window.size``). Deterministic in its arguments; the decoder reads
        the result from the stream."""
        w = self.window
        if not self.kv_budget or longest + 1 <= w.size:
            return w
        cap = self.kv_budget // max(1, lanes)
        if n_ctx_train > 0:
            cap = min(cap, n_ctx_train)
        if cap <= w.size:
            return w
        size = 1 << (cap.bit_length() - 1)
        if size <= w.size:
            return w
        return Window(size, w.sink, w.slide * size // w.size)

    @classmethod
    def from_level(cls, level: int | None = None, **fields) -> "Options":
        """The options of compression level ``level`` (1 fastest .. 9 best ratio; ``None``:
        ``DEFAULT_LEVEL``), with ``fields`` (any ``Options`` field) replacing the level's values.
        A level only picks recorded settings, so decompression never needs it.

        Raises ValueError for a level outside 1..9, TypeError for one that is not an int."""
        if level is None:
            level = DEFAULT_LEVEL
        if not isinstance(level, int) or isinstance(level, bool):
            raise TypeError(f"level must be an int, not {type(level).__name__}")
        if level not in LEVELS:
            raise ValueError(f"level must be in 1..9, not {level}")
        return cls(**{**LEVELS[level], **fields})


def _level(window: Window, min_lane_tokens: int, max_lanes: int = 8, ensemble: EnsembleParams = DEFAULT_ENSEMBLE,
           kv_budget: int = 0):
    return dict(window=window, min_lane_tokens=min_lane_tokens, max_lanes=max_lanes, ensemble=ensemble,
                kv_budget=kv_budget)


# Compression levels, as zstd's and xz's: each a preset of recorded settings. Speed comes from a
# smaller KV window (attention costs per cached position) and more, shorter lanes (decoding
# batches one token of every lane per llama_decode); ratio from the opposite. Levels 6..9 widen
# the window of frames with few lanes up to 8192 KV cells per step (Options.frame_window): a
# one-lane frame (< 16,384 tokens) gets the model's whole 8k context, a frame of 5+ lanes keeps
# the level's window. Measured: bench/results/speed.md ("Levels").
LEVELS = {
    1: _level(Window(256, 4, 64), 1024, 16),
    2: _level(Window(512, 4, 128), 1024, 16),
    3: _level(Window(512, 4, 128), 2048),
    4: _level(Window(1024, 4, 256), 2048),
    5: _level(Window(1024, 4, 256), 4096),
    6: _level(Window(1024, 4, 256), 8192, kv_budget=8192),
    7: _level(Window(2048, 4, 512), 8192, kv_budget=8192),
    8: _level(Window(2048, 4, 512), 16384, kv_budget=8192),
    9: _level(Window(4096, 4, 1024), 32768, kv_budget=8192),
}
DEFAULT_LEVEL = 6
"""The level ``Options()`` has (its field defaults are level 6's)."""


@dataclass
class Execution:
    """Execution switches of an Engine: they change speed, never a bit (tests and benchmarks set
    them on an Engine instead of patching module globals).

    draft_max: most draft tokens per ``llama_decode`` when decoding a one-lane frame (0: no
    drafts). draft_min_match: tokens the lane's recent history must match an earlier occurrence
    by before that occurrence's continuation is drafted (``PromptLookup.min_match``).
    draft_min_hit_rate: drafts are evaluated only while this share of guesses came true."""

    draft_max: int = 8
    draft_min_match: int = 3
    draft_min_hit_rate: float = 0.3
