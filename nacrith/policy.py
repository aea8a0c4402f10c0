"""The size guard: no output is more than ``GUARD_SLACK`` bytes over the better of ``zstd -19``
and ``xz -9e`` of its input (inputs up to ``GUARD_MAX`` bytes).

A hybrid stream (LLM frames for text runs, binary frames for the rest) can lose to one binary
frame of the whole input when its binary runs compress worse apart than together. The guard keeps
the input and holds the hybrid stream back until the end; if the binary-only stream of the whole
input (the smallest of stored, zstd -19 and lzma2 per frame: a few bytes of framing over the
better of zstd -19 and xz -9e, since lzma2 at xz -9e's own settings is ~48 bytes under xz's .xz
file) is smaller, that stream is written instead. Past ``GUARD_MAX`` bytes of input the held
output is released and the rest streams through (memory stays bounded; the per-frame choice
still bounds every frame).

``GuardedEncoder`` is the one stream writer of every entry point: ``compress()``,
``NacrithCompressor``, ``nacrith.open(..., "w")`` and the CLI (files and pipes), so that
``compress(d) == NacrithCompressor().compress(d) + flush()`` byte for byte.
"""

from __future__ import annotations

from typing import Callable

from .encoder import StreamEncoder, StreamWriter, code_frame
from .format import MAX_FRAME_SIZE
from .options import Options

Progress = Callable[[int], None]
GUARD_SLACK = 64  # bytes over the better of zstd -19 and xz -9e that an output may cost
GUARD_MAX = 64 << 20  # inputs up to this many bytes are guarded (held in memory meanwhile)


def binary_stream(data: bytes, reuse: tuple[bytes, tuple] | None = None) -> bytes:
    """A stream of binary frames only (the smallest of zstd, lzma2, stored per frame), with a
    frame size of the whole input (up to the cap): the guard's alternative.
    ``reuse``: ``FrameWriter.first`` of the hybrid stream, so that a one-frame input is not
    compressed twice (the output is the same either way)."""
    opts = Options(frame_size=max(1, min(len(data), MAX_FRAME_SIZE)))
    w = StreamWriter(None, opts)
    out = []
    for a in range(0, len(data), opts.frame_size):
        raw = data[a:a + opts.frame_size]
        known = reuse[1] if reuse is not None and reuse[0] == raw else None
        out.append(w.write(raw, code_frame(None, raw, False, opts, binary=known)))
    return b"".join(out) + w.finish()


class GuardedEncoder:
    """Bytes in, stream bytes out, with the size guard (module docstring).

    ``feed(data)`` returns the stream bytes that may be written now (``b""`` while the input is
    guarded); ``finish()`` the rest. ``fallback`` is True when the binary-only stream was chosen.

    Args: as ``compress``.
    """

    def __init__(self, session, options: Options = Options(), progress: Progress | None = None,
                 stats: dict | None = None, guard_max: int = GUARD_MAX):
        self._enc = StreamEncoder(session, options, progress, stats)
        self._stats = stats
        self._max = guard_max
        self._input: bytearray | None = bytearray()
        self._held: list[bytes] = []
        self.fallback = False

    @property
    def options(self) -> Options:
        """The options in force (attention mode and schedule resolved by the session)."""
        return self._enc.options

    def feed(self, data) -> bytes:
        data = memoryview(data).cast("B")
        out = self._enc.feed(data)
        if self._input is None:
            return out
        self._input += data
        self._held.append(out)
        if len(self._input) <= self._max:
            return b""
        self._input = None  # too long to guard: release what was held, stream from now on
        held, self._held = b"".join(self._held), []
        return held

    def finish(self) -> bytes:
        out = self._enc.finish()
        if self._input is None:
            return out
        hybrid = b"".join(self._held) + out
        data, self._input, self._held = bytes(self._input), None, []
        if data:
            alt = binary_stream(data, self._enc.writer.first)
            if len(alt) < len(hybrid):
                self.fallback = True
                if self._stats is not None:
                    self._stats["fallback"] = True
                return alt
        return hybrid


def compress(data: bytes, session, options: Options = Options(),
             progress: Progress | None = None, stats: dict | None = None) -> bytes:
    """Compress ``data`` into one nacrith stream (bytes), guarded (module docstring).

    Text runs go to the LLM (untokenisable bytes escaped), binary runs to zstd / lzma2 / stored,
    chosen per frame by size.

    Args:
        data: the input (bytes-like).
        session: model and contexts to use.
        options: encoder choices (``Options``).
        progress: called with the number of input bytes finished, as they finish.
        stats: optional dict, filled with ``tokens``/``skipped`` (LLM frames' tokens and those
            coded without the LLM), ``frames`` (count per frame kind name) and ``fallback``.
    """
    enc = GuardedEncoder(session, options, progress, stats)
    return enc.feed(data) + enc.finish()
