"""The stream writer: input bytes -> text and binary runs (``nacrith.segment.cut``) -> frames,
each the smallest of its candidates (LLM for text runs: ``nacrith.llm_frame``; stored, zstd,
lzma2: ``nacrith.binary``) -> the stream (``nacrith.container``: header, params, frames, seek
table, end frame). Every frame carries a checksum of its original bytes and the end frame one
of the whole input.

Two parts: ``code_frame`` computes a frame's candidate payloads (any process: the scheduler's
workers run it), ``FrameWriter`` picks between them and lays out the stream, in input order (the
choice depends on whether the params frame was written before).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from .binary import BinaryCoder
from .container import (FRAME_LLM, FRAME_NAMES, SeekEntry, StreamHeader, total_hasher, write_end, write_frame,
                        write_seek_table)
from .llm_frame import encode_widened_frame
from .params import Window
from .segment import cut
from .session import Options, Session
from .scheduler import Scheduler

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


def code_frame(session: Session | None, raw: bytes, text: bool, options: Options,
               progress: Progress | None = None, binary: tuple | None = None) -> CodedFrame:
    """Candidates of ``raw`` (1..frame_size bytes): the smallest of stored, zstd and lzma2 and,
    when ``text``, the LLM payload, coded with the window ``Options.frame_window`` picks for its
    lanes (``llm_frame.encode_widened_frame``; ``session`` may be None when not ``text``).
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
    llm, window = (encode_widened_frame(session, raw, options, prog, stats) if text else None) or (None, None)
    if progress and done[0] < len(raw):
        progress(len(raw) - done[0])
    return CodedFrame(binary, llm, stats, window)


class FrameWriter:
    """Lays out the stream (format version 2): ``write(raw, coded)`` returns the bytes of one
    frame, preceded on the first call by the stream header (which holds the params when that
    frame is an LLM frame), and by a params frame before an LLM frame whose params (its KV
    window: ``CodedFrame.window``) differ from those in force; the smaller of ``coded``'s
    candidates counting the params it would need. ``finish()`` returns
    the seek table (two data frames or more) and end frame. ``session`` gives the params (only
    for LLM frames).
    """

    def __init__(self, session: Session | None, options: Options = Options(), stats: dict | None = None):
        self.session, self.options, self.stats = session, options, stats
        self.first: tuple[bytes, tuple] | None = None  # (raw, smallest binary) of the only frame so far
        self.pos = 0  # bytes emitted so far
        self.entries: list[SeekEntry] = []
        self.hasher = total_hasher()
        self._params = None  # LLMParams in force (None: none written yet)
        self._params_offset: int | None = None  # where they are (0: in the stream header)
        self._base = None  # LLMParams of this writer's options (their window replaced per frame)
        self._started = False
        self.finished = False

    def _emit(self, parts: list[bytes], chunk: bytes) -> None:
        parts.append(chunk)
        self.pos += len(chunk)

    def write(self, raw: bytes, coded: CodedFrame) -> bytes:
        if self.finished:
            raise ValueError("stream already finished")
        parts: list[bytes] = []
        self.hasher.update(raw)
        self.first = (raw, coded.binary) if not self.entries else None
        candidates = [coded.binary]
        header = StreamHeader(self.options.frame_size)
        params = None
        if coded.llm is not None:
            self._base = self._base or self.session.params(self.options)
            params = replace(self._base, window=coded.window or self.options.window)
            extra = 0
            if params != self._params:  # the params it needs: in the header, or a params frame
                extra = (len(StreamHeader(self.options.frame_size, params).encode()) - len(header.encode())
                         if not self._started else len(params.encode()))
            candidates.append((len(coded.llm) + extra, FRAME_LLM, coded.llm))
        _, kind, payload = _smallest(candidates)
        llm = kind == FRAME_LLM
        if not self._started:
            if llm:
                header.params, self._params, self._params_offset = params, params, 0
            self._emit(parts, header.encode())
            self._started = True
        if llm and params != self._params:
            self._params, self._params_offset = params, self.pos
            self._emit(parts, params.encode())
        self.entries.append(SeekEntry(len(raw), self.pos, self._params_offset if llm else 0))
        self._emit(parts, write_frame(kind, raw, payload))
        if self.stats is not None:
            frames = self.stats.setdefault("frames", {})
            frames[FRAME_NAMES[kind]] = frames.get(FRAME_NAMES[kind], 0) + 1
            for k, v in coded.stats.items():
                if llm or k.startswith("verif"):  # a frame that failed verification is binary
                    self.stats[k] = self.stats.get(k, 0) + v
        return b"".join(parts)

    def finish(self) -> bytes:
        """Seek table (when there is more than one data frame) and end frame. Idempotent: a
        second call returns b""."""
        if self.finished:
            return b""
        self.finished = True
        parts: list[bytes] = []
        if not self._started:
            self._emit(parts, StreamHeader(self.options.frame_size).encode())
        if len(self.entries) > 1:
            seek = self.pos
            self._emit(parts, write_seek_table(self.entries))
            self._emit(parts, write_end(self.hasher.digest(), seek))
        else:
            self._emit(parts, write_end())
        return b"".join(parts)


class StreamEncoder:
    """Bytes in, stream bytes out, in bounded memory: buffers up to one frame of input, splits it
    into text and binary frames (``nacrith.segment.cut``) and hands them to the session's frame
    scheduler (``nacrith.scheduler``: in this process or on workers, a bounded number in flight);
    frames are written in input order, so the output does not depend on the executor.

    ``feed(data)`` returns the stream bytes ready so far; ``finish()`` the rest.
    """

    def __init__(self, session: Session, options: Options = Options(), progress: Progress | None = None,
                 stats: dict | None = None):
        session.check_open()
        options = session.resolve(options)  # the attention mode is fixed here, for every worker
        self.writer = FrameWriter(session, options, stats)
        self.session = session
        self.options = options
        self.frame_size = options.frame_size
        self._progress = progress
        self._sched: Scheduler | None = None  # started with the second frame
        self._held: tuple[bytes, bool] | None = None  # the first frame, until a second one comes
        self._buf = bytearray()

    def _submit(self, piece: bytes, text: bool) -> list[bytes]:
        """Hand a frame to the scheduler; the stream bytes of the frames finished so far. A
        one-frame input is coded in this process: the workers start with the second frame."""
        if self._sched is None:
            if self._held is None:
                self._held = (piece, text)
                return []
            self._sched = Scheduler(self.session.executor(), self._progress)
            out = self._submit(*self._held)
            self._held = None
            return out + self._submit(piece, text)
        return [self.writer.write(raw, coded)
                for raw, coded in self._sched.submit("encode", (piece, text, self.options), piece, len(piece))]

    def _drain(self) -> list[bytes]:
        if self._sched is None and self._held is not None:
            self._sched = Scheduler(self.session.inline(), self._progress)
            out = self._submit(*self._held)
            self._held = None
            return out + self._drain()
        if self._sched is None:
            return []
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
