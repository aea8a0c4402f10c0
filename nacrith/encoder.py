"""The stream encoder: input bytes -> text and binary runs (``nacrith.segment.cut``) -> frames,
each the smallest of its candidates (LLM for text runs: ``nacrith.llm_frame``; stored, zstd,
lzma2: ``nacrith.binary``) -> the stream (``nacrith.format.FrameWriter``: header, params, frames,
seek table, end frame). Every frame carries a checksum of its original bytes and the end frame
one of the whole input.

Two parts: ``code_frame`` computes a frame's candidate payloads (on any engine: the scheduler's
workers run it), ``StreamWriter`` picks between them and lays out the stream, in input order (the
choice depends on whether the params frame was written before).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from .binary import BinaryCoder
from .format import FrameWriter
from .llm_frame import encode_widened_frame
from .options import Options
from .params import Window
from .segment import cut

Progress = Callable[[int], None]


@dataclass
class CodedFrame:
    """The candidates of one frame: ``binary`` = (payload size, frame type, payload) of the
    smallest binary coding; ``llm`` = the LLM payload (None: not text, or its tokens do not
    reproduce it) and ``window`` the KV window it was coded with (``Options.frame_window``);
    ``stats``: ``tokens``/``skipped`` of the LLM coding."""

    binary: tuple[int, int, bytes]
    llm: bytes | None = None
    stats: dict = field(default_factory=dict)
    window: Window | None = None


def _smallest(cands: list) -> tuple[int, int, bytes]:
    return min(cands, key=lambda c: (c[0], c[1]))


def code_frame(engine, raw: bytes, text: bool, options: Options,
               progress: Progress | None = None, binary: tuple | None = None) -> CodedFrame:
    """Candidates of ``raw`` (1..frame_size bytes): the smallest of stored, zstd and lzma2 and,
    when ``text``, the LLM payload, coded with the window ``Options.frame_window`` picks for its
    lanes (``llm_frame.encode_widened_frame`` on ``engine``, an Engine; None when not ``text``).
    ``binary``: the smallest binary coding when known already. ``progress`` gets input bytes as
    they are coded."""
    if not 0 < len(raw) <= options.frame_size:
        raise ValueError(f"frame of {len(raw)} bytes (frame size {options.frame_size})")
    binary = binary or _smallest(BinaryCoder().candidates(raw))
    done = [0]

    def prog(n):
        done[0] += n
        if progress:
            progress(n)

    stats: dict = {}
    llm, window = (encode_widened_frame(engine, raw, options, prog, stats) if text else None) or (None, None)
    if progress and done[0] < len(raw):
        progress(len(raw) - done[0])
    return CodedFrame(binary, llm, stats, window)


class StreamWriter:
    """The encoder's side of ``nacrith.format.FrameWriter``: turns a ``CodedFrame`` into the
    writer's candidates, with the LLM params of this engine's options and the frame's window;
    merges each LLM frame's stats (and the verification counts of every frame) into ``stats``.
    ``engine`` is only asked for LLM params."""

    def __init__(self, engine, options: Options = Options(), stats: dict | None = None):
        self.engine, self.options, self.stats = engine, options, stats
        self.layout = FrameWriter(options.frame_size, stats)
        self._base = None  # LLMParams of these options (their window replaced per frame)

    @property
    def first(self):
        return self.layout.first

    def write(self, raw: bytes, coded: CodedFrame) -> bytes:
        params = None
        if coded.llm is not None:
            self._base = self._base or self.engine.params(self.options)
            params = replace(self._base, window=coded.window or self.options.window)
        out = self.layout.write(raw, coded.binary, coded.llm, params)
        if self.stats is not None:
            for k, v in coded.stats.items():
                if self.layout.last_llm or k.startswith("verif"):  # a frame that failed verification is binary
                    self.stats[k] = self.stats.get(k, 0) + v
        return out

    def finish(self) -> bytes:
        return self.layout.finish()


class StreamEncoder:
    """Bytes in, stream bytes out, in bounded memory: buffers up to one frame of input, splits it
    into text and binary frames (``nacrith.segment.cut``) and hands them to the session's frame
    scheduler (``nacrith.scheduler``: in this process or on workers, a bounded number in flight);
    frames are written in input order, so the output does not depend on the executor.

    ``feed(data)`` returns the stream bytes ready so far; ``finish()`` the rest.
    """

    def __init__(self, session, options: Options = Options(), progress: Progress | None = None,
                 stats: dict | None = None):
        session.check_open()
        options = session.resolve(options)  # the attention mode and schedule are fixed here, for every worker
        self.writer = StreamWriter(session, options, stats)
        self.session = session
        self.options = options
        self.frame_size = options.frame_size
        self._sched = session.scheduler(progress)
        self._buf = bytearray()

    def _submit(self, piece: bytes, text: bool) -> list[bytes]:
        """Hand a frame to the scheduler; the stream bytes of the frames finished so far."""
        return [self.writer.write(raw, coded)
                for raw, coded in self._sched.submit(code_frame, (piece, text, self.options), piece, len(piece))]

    def _drain(self) -> list[bytes]:
        return [self.writer.write(raw, coded) for raw, coded in self._sched.drain()]

    def _emit(self, final: bool) -> bytes:
        out = []
        while len(self._buf) >= self.frame_size or (final and self._buf):
            chunk = bytes(self._buf[:self.frame_size])
            del self._buf[:self.frame_size]
            last = final and not self._buf
            m = self.session.model
            frames, carry = cut(chunk, m.missing_bytes, m.tokenize, self.frame_size, last)
            self._buf[:0] = carry
            for piece, text in frames:
                out += self._submit(piece, text)
            if carry and len(chunk) == len(carry):  # nothing but a tail: cannot progress
                self._buf[:len(carry)] = b""
                out += self._submit(carry, False)
        if final:
            out += self._drain()
        return b"".join(out)

    def feed(self, data) -> bytes:
        self._buf += memoryview(data).cast("B")
        return self._emit(False)

    def finish(self) -> bytes:
        return self._emit(True) + self.writer.finish()
