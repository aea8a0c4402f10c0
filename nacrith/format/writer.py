"""Writing streams (``codec/FORMAT.md``): ``FrameWriter`` lays out the encoder's frames (header,
params, data frames, seek table, end frame), choosing for each frame the smaller of its binary and
LLM candidates counting the params it would need; ``build_stream`` lays out given frames (tests,
vectors, fuzzing). Pure."""

from __future__ import annotations

from .frames import SeekEntry, write_end, write_frame, write_seek_table
from .header import LLMParams, StreamHeader
from .wire import FRAME_LLM, FRAME_NAMES, total_hasher


def _smallest(cands: list) -> tuple[int, int, bytes]:
    return min(cands, key=lambda c: (c[0], c[1]))


class FrameWriter:
    """Lays out one stream (format version 2): ``write(raw, binary, llm, params)`` returns the
    bytes of one frame, preceded on the first call by the stream header (which holds the params
    when that frame is an LLM frame), and by a params frame before an LLM frame whose params
    differ from those in force; ``finish()`` returns the seek table (two data frames or more) and
    end frame.

    ``binary``: (payload size, frame type, payload) of the smallest binary coding; ``llm``: the LLM
    payload (None: none) and ``params`` its params. ``first`` holds (raw, binary) while the stream
    has one frame (the size guard reuses it). ``stats`` (a dict) counts frames per kind."""

    def __init__(self, frame_size: int, stats: dict | None = None):
        self.frame_size, self.stats = frame_size, stats
        self.first: tuple[bytes, tuple] | None = None
        self.pos = 0  # bytes emitted so far
        self.entries: list[SeekEntry] = []
        self.hasher = total_hasher()
        self._params: LLMParams | None = None  # in force (None: none written yet)
        self._params_offset: int | None = None  # where they are (0: in the stream header)
        self._started = False
        self.finished = False

    def _emit(self, parts: list[bytes], chunk: bytes) -> None:
        parts.append(chunk)
        self.pos += len(chunk)

    def write(self, raw: bytes, binary: tuple, llm: bytes | None = None, params: LLMParams | None = None) -> bytes:
        """The stream bytes of one frame (see the class); returns whether it was an LLM frame in
        ``self.last_llm``."""
        if self.finished:
            raise ValueError("stream already finished")
        parts: list[bytes] = []
        self.hasher.update(raw)
        self.first = (raw, binary) if not self.entries else None
        candidates = [binary]
        header = StreamHeader(self.frame_size)
        if llm is not None:
            extra = 0
            if params != self._params:  # the params it needs: in the header, or a params frame
                extra = (len(StreamHeader(self.frame_size, params).encode()) - len(header.encode())
                         if not self._started else len(params.encode()))
            candidates.append((len(llm) + extra, FRAME_LLM, llm))
        _, kind, payload = _smallest(candidates)
        self.last_llm = is_llm = kind == FRAME_LLM
        if not self._started:
            if is_llm:
                header.params, self._params, self._params_offset = params, params, 0
            self._emit(parts, header.encode())
            self._started = True
        if is_llm and params != self._params:
            self._params, self._params_offset = params, self.pos
            self._emit(parts, params.encode())
        self.entries.append(SeekEntry(len(raw), self.pos, self._params_offset if is_llm else 0))
        self._emit(parts, write_frame(kind, raw, payload))
        if self.stats is not None:
            frames = self.stats.setdefault("frames", {})
            frames[FRAME_NAMES[kind]] = frames.get(FRAME_NAMES[kind], 0) + 1
        return b"".join(parts)

    def finish(self) -> bytes:
        """Seek table (when there is more than one data frame) and end frame. Idempotent: a
        second call returns b""."""
        if self.finished:
            return b""
        self.finished = True
        parts: list[bytes] = []
        if not self._started:
            self._emit(parts, StreamHeader(self.frame_size).encode())
        if len(self.entries) > 1:
            seek = self.pos
            self._emit(parts, write_seek_table(self.entries))
            self._emit(parts, write_end(self.hasher.digest(), seek))
        else:
            self._emit(parts, write_end())
        return b"".join(parts)

def build_stream(frames: list[tuple[int, bytes, bytes]], frame_size: int = 1 << 20,
                 params: LLMParams | None = None) -> bytes:
    """A version 2 stream of the given (type, original bytes, payload) data frames, with
    ``params`` in the header (for LLM frames), a seek table when there are two frames or more,
    and the end frame: for tests, vectors and fuzzing (the encoder is ``nacrith.encoder``)."""
    out = [StreamHeader(frame_size, params).encode()]
    pos, entries, h = len(out[0]), [], total_hasher()
    for kind, raw, payload in frames:
        entries.append(SeekEntry(len(raw), pos, 0))
        out.append(write_frame(kind, raw, payload))
        pos += len(out[-1])
        h.update(raw)
    if len(frames) > 1:
        out += [write_seek_table(entries), write_end(h.digest(), pos)]
    else:
        out.append(write_end())
    return b"".join(out)
