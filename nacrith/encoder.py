"""The stream writer: input bytes -> text and binary runs (``nacrith.segment.cut``) -> frames,
each the smallest of its candidates (LLM for text runs: ``nacrith.llm_frame``; stored, zstd,
lzma2: ``nacrith.binary``) -> the stream (``nacrith.container``: header, params, frames, seek
table, end frame). Every frame carries a checksum of its original bytes and the end frame one
of the whole input.
"""

from __future__ import annotations

from typing import Callable

from .binary import BinaryCoder
from .container import (FRAME_LLM, FRAME_NAMES, SeekEntry, StreamHeader, total_hasher, write_end, write_frame,
                        write_seek_table)
from .llm_frame import encode_llm_frame
from .segment import cut
from .session import Options, Session

Progress = Callable[[int], None]


class FrameEncoder:
    """Incremental stream writer: ``encode_frame(raw)`` returns the bytes of one frame (preceded
    by the stream header on the first call and by the params frame before the first LLM frame);
    ``finish()`` returns the seek table and end frame. Memory: one frame at a time.

    Args: as ``compress``.
    """

    def __init__(self, session: Session, options: Options = Options(), progress: Progress | None = None,
                 stats: dict | None = None, reuse: tuple[bytes, list] | None = None):
        self.session, self.options, self.progress, self.stats = session, options, progress, stats
        self.reuse = reuse  # (raw, binary candidates) computed before for the same raw bytes
        self.first: tuple[bytes, list] | None = None  # the same for this stream's only frame so far
        self.pos = 0  # bytes emitted so far
        self.entries: list[SeekEntry] = []
        self.total = 0
        self.hasher = total_hasher()
        self._binary = BinaryCoder()
        self._params_frame: bytes | None = None
        self._params_offset = 0  # 0 until written
        self._started = False
        self.finished = False

    def _emit(self, parts: list[bytes], chunk: bytes) -> None:
        parts.append(chunk)
        self.pos += len(chunk)

    def encode_frame(self, raw: bytes, text: bool = True) -> bytes:
        """Encode ``raw`` (1..frame_size bytes) as one frame: the smallest of stored, zstd,
        lzma2 and (when ``text``) the LLM."""
        if self.finished:
            raise ValueError("stream already finished")
        if not 0 < len(raw) <= self.options.frame_size:
            raise ValueError(f"frame of {len(raw)} bytes (frame size {self.options.frame_size})")
        parts: list[bytes] = []
        if not self._started:
            self._emit(parts, StreamHeader(self.options.frame_size).encode())
            self._started = True
        self.hasher.update(raw)
        self.total += len(raw)
        candidates = self._binary_candidates(raw)
        done = [0]

        def prog(n, done=done):
            done[0] += n
            if self.progress:
                self.progress(n)

        llm_stats: dict = {}
        llm = encode_llm_frame(self.session, raw, self.options, prog, llm_stats) if text else None
        if llm is not None:
            self._params_frame = self._params_frame or self.session.params(self.options).encode()
            extra = 0 if self._params_offset else len(self._params_frame)
            candidates.append((len(llm) + extra, FRAME_LLM, llm))
        if self.progress and done[0] < len(raw):
            self.progress(len(raw) - done[0])
        _, kind, payload = min(candidates, key=lambda c: (c[0], c[1]))
        if kind == FRAME_LLM and not self._params_offset:
            self._params_offset = self.pos
            self._emit(parts, self._params_frame)
        self.entries.append(SeekEntry(len(raw), self.pos, self._params_offset if kind == FRAME_LLM else 0))
        self._emit(parts, write_frame(kind, raw, payload))
        if self.stats is not None:
            frames = self.stats.setdefault("frames", {})
            frames[FRAME_NAMES[kind]] = frames.get(FRAME_NAMES[kind], 0) + 1
            if kind == FRAME_LLM:
                for k, v in llm_stats.items():
                    self.stats[k] = self.stats.get(k, 0) + v
        return b"".join(parts)

    def _binary_candidates(self, raw: bytes) -> list[tuple[int, int, bytes]]:
        """(size, frame type, payload) of stored, zstd and the lzma2 settings for ``raw``. Reuses
        ``self.reuse`` when it holds the same bytes (the whole-input fallback of a one-frame
        stream codes exactly the hybrid frame's bytes), and keeps the first frame's candidates
        in ``self.first`` until a second frame comes."""
        if self.reuse is not None and self.reuse[0] == raw:
            cands = self.reuse[1]
        else:
            cands = self._binary.candidates(raw)
        self.first = (raw, cands) if not self.entries else None
        return list(cands)

    def finish(self) -> bytes:
        """Seek table (when there is more than one data frame) and end frame. Idempotent: a
        second call returns b""."""
        if self.finished:
            return b""
        self.finished = True
        parts: list[bytes] = []
        if not self._started:
            self._emit(parts, StreamHeader(self.options.frame_size).encode())
        seek = 0
        if len(self.entries) > 1:
            seek = self.pos
            self._emit(parts, write_seek_table(self.entries))
        self._emit(parts, write_end(self.total, self.hasher.digest(), seek))
        return b"".join(parts)


class StreamEncoder:
    """Bytes in, stream bytes out, in bounded memory: buffers up to one frame of input, splits it
    into text and binary frames (``nacrith.segment.cut``) and encodes them.

    ``feed(data)`` returns the stream bytes ready so far; ``finish()`` the rest.
    """

    def __init__(self, session: Session, options: Options = Options(), progress: Progress | None = None,
                 stats: dict | None = None):
        self.enc = FrameEncoder(session, options, progress, stats)
        self.session = session
        self.frame_size = options.frame_size
        self._buf = bytearray()

    def _emit(self, final: bool) -> bytes:
        out = []
        while len(self._buf) >= self.frame_size or (final and self._buf):
            chunk = bytes(self._buf[:self.frame_size])
            del self._buf[:self.frame_size]
            last = final and not self._buf
            m = self.session.model
            frames, carry = cut(chunk, m.missing_bytes, m.tokenize, self.frame_size, last)
            self._buf[:0] = carry
            out += [self.enc.encode_frame(piece, text) for piece, text in frames]
            if carry and len(chunk) == len(carry):  # nothing but a tail: cannot progress
                self._buf[:len(carry)] = b""
                out.append(self.enc.encode_frame(carry, False))
        return b"".join(out)

    def feed(self, data) -> bytes:
        self._buf += memoryview(data).cast("B")
        return self._emit(False)

    def finish(self) -> bytes:
        return self._emit(True) + self.enc.finish()
