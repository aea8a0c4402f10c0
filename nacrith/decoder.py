"""The stream reader: stream bytes -> items of the pull parser (``nacrith.container.StreamParser``)
-> original bytes of each frame (``nacrith.llm_frame``, ``nacrith.binary``), every frame checked
against its checksum before it is returned and the whole output against the end frame's.
``SeekIndex`` reads one frame of a seekable file through the same parser.
"""

from __future__ import annotations

import bisect
import io
from typing import BinaryIO, Callable

from . import binary
from .container import (END_FRAME, END_FRAME_V2, END_MAGIC, FRAME_LLM, FRAME_NAMES, MAGIC, EndFrame, Frame, LLMParams,
                        SeekTable, StreamHeader, StreamParser, frame_checksum, read_end, total_hasher)
from .errors import ChecksumError, FormatError, TruncatedError
from .llm_frame import decode_llm_frame
from .scheduler import Scheduler
from .session import Session

Progress = Callable[[int], None]
READ = 1 << 16


def decode_frame(session: Session, fr: Frame, out_offset: int = 0, progress: Progress | None = None) -> bytes:
    """Original bytes of one data frame, checksum verified.

    Raises FormatError (corrupt payload), ChecksumError, ModelMismatchError.
    """
    if fr.kind == FRAME_LLM:
        raw = decode_llm_frame(session, fr, progress)
    else:
        raw = binary.decode(fr)
    if len(raw) != fr.raw_size or frame_checksum(raw) != fr.checksum:
        raise ChecksumError(f"frame at offset {fr.offset} ({FRAME_NAMES[fr.kind]}, output bytes "
                            f"{out_offset}..{out_offset + fr.raw_size}): checksum mismatch")
    if progress and fr.kind != FRAME_LLM:
        progress(len(raw))
    return raw


class FrameDecoder:
    """Incremental stream reader: ``feed(chunk)`` returns the original bytes of every frame that
    became complete (each verified against its checksum before it is returned); ``eof`` turns
    True after the end frame, whose whole-stream checksum is verified too (the seek table is
    checked against the frames by the parser). LLM frames go to the session's frame scheduler
    (in this process, or on workers with a bounded number in flight), binary frames are decoded
    here; output stays in input order. Memory: the input and output of the frames in flight.
    """

    def __init__(self, session: Session, progress: Progress | None = None):
        session.check_open()
        self.session = session
        self.progress = progress
        self.parser = StreamParser()
        self._sched: Scheduler | None = None
        self._held: Frame | None = None  # the first LLM frame, until the next item shows if it is alone
        self._llm = None  # the executor of LLM frames, once chosen
        self._hasher = total_hasher()
        self._queued = 0  # output offset of the next frame submitted
        self.size = 0  # bytes output so far
        self.eof = False

    @property
    def needs_input(self) -> bool:
        return not self.eof

    @property
    def unused_data(self) -> bytes:
        return self.parser.unused_data

    def _done(self, results: list, out: list) -> None:
        for _, raw in results:
            self._hasher.update(raw)
            self.size += len(raw)
            out.append(raw)

    def feed(self, data) -> bytes:
        """Original bytes of the frames ``data`` completes. Raises FormatError, ChecksumError,
        ModelMismatchError as soon as they are detected."""
        self.parser.feed(data)
        out: list[bytes] = []
        while (item := self.parser.next()) is not None:
            if isinstance(item, Frame):
                if self._held is not None:  # a second frame: the held LLM frame goes to the workers
                    self._release(self.session.executor(), out)
                if item.kind == FRAME_LLM and self._llm is None:
                    self._held = item  # the first LLM frame waits: is it the only frame?
                else:
                    self._submit(item, out)
            elif isinstance(item, EndFrame):
                if self._held is not None:  # one LLM frame: decoded in this process
                    self._release(self.session.inline(), out)
                if self._sched is not None:
                    self._done(self._sched.drain(), out)
                if item.total_size != self.size or self._hasher.digest() != item.checksum:
                    raise ChecksumError(f"whole-stream checksum mismatch ({self.size} bytes decoded, "
                                        f"{item.total_size} declared)")
                self.eof = True
        return b"".join(out)

    def _release(self, executor, out: list) -> None:
        """Decode LLM frames on ``executor`` from now on, starting with the held one."""
        self._llm = executor
        held, self._held = self._held, None
        self._submit(held, out)

    def _submit(self, item: Frame, out: list) -> None:
        inline = self.session.inline()
        if self._sched is None:
            self._sched = Scheduler(inline, self.progress)
        llm = item.kind == FRAME_LLM
        if llm and self._sched.executor is not self._llm:
            self._sched.use(self._llm)
        if llm and self._llm is not inline:
            item.payload = bytes(item.payload)  # sent to another process
        self._done(self._sched.submit("decode", (item, self._queued), None, item.raw_size,
                                      None if llm else inline), out)  # binary frames: decoded here
        self._queued += item.raw_size

    def close(self) -> None:
        """Declare the input complete. Raises TruncatedError if the stream is incomplete."""
        self.parser.close()


class ConcatDecoder:
    """Concatenated streams, as gzip, xz and zstd read them (``cat a.nc b.nc | nacrith -d``,
    files appended to with ``nacrith.open(..., "a")``): the original bytes of each stream in
    turn, each verified as ``FrameDecoder`` verifies one. ``feed``/``close`` as FrameDecoder.

    ``eof``: the input so far ends exactly at the end of a stream. ``trailing``: bytes after the
    end of a stream do not start another one (they are in ``unused_data``; the caller reports
    them). ``streams``: streams completed.
    """

    def __init__(self, session: Session, progress: Progress | None = None):
        self.session, self.progress = session, progress
        self._dec = FrameDecoder(session, progress)
        self._next = b""  # bytes after the last end frame, not yet known to start a stream
        self.streams = 0
        self.trailing = False

    @property
    def eof(self) -> bool:
        return self._dec.eof and not self._next

    @property
    def unused_data(self) -> bytes:
        return self._next if self._dec.eof else b""

    @property
    def size(self) -> int:
        return self._dec.size

    def feed(self, data) -> bytes:
        out: list[bytes] = []
        data = bytes(data)
        while not self.trailing:
            if not self._dec.eof:
                out.append(self._dec.feed(data))
                if not self._dec.eof:
                    break
                self.streams += 1
                data = bytes(self._dec.unused_data)
            self._next += data
            data = b""
            n = min(len(self._next), len(MAGIC))
            if self._next[:n] != MAGIC[:n]:
                self.trailing = True
            elif n < len(MAGIC):
                break  # the next stream's magic is not complete yet
            else:
                self._dec = FrameDecoder(self.session, self.progress)
                data, self._next = self._next, b""
        if self.trailing and data:
            self._next += data
        return b"".join(out)

    def close(self) -> None:
        """Declare the input complete. Raises TruncatedError when a stream is incomplete."""
        if not self._dec.eof:
            self._dec.close()
        elif self._next and not self.trailing:
            raise TruncatedError("truncated stream: incomplete magic number of a concatenated stream")


def decompress(data: bytes, session: Session, progress: Progress | None = None) -> bytes:
    """Decompress a whole nacrith stream, or several concatenated, and verify every checksum.

    Raises:
        FormatError, TruncatedError: the stream is malformed (trailing data included).
        ChecksumError: a frame or the whole output does not match its checksum.
        ModelMismatchError: the stream needs another model or backend.
    """
    d = ConcatDecoder(session, progress)
    out = d.feed(data)
    d.close()
    if d.trailing:
        raise FormatError(f"{len(d.unused_data)} bytes of trailing data after the end frame")
    return out


class SeekIndex:
    """Frame index of a seekable compressed file, from its end frame and seek table; reads one
    frame (and the params frame in force for it) through ``StreamParser``. Raises FormatError
    for a file it cannot index (no seek table, or several concatenated streams): read it from
    the start instead."""

    def __init__(self, fp: BinaryIO):
        fp.seek(0, io.SEEK_END)
        size = fp.tell()
        self._fp = fp
        self.header: StreamHeader | None = None
        self.header = self._item(0, StreamHeader)
        v = self.header.version
        end_size = END_FRAME.size if v == 1 else END_FRAME_V2.size
        if size < end_size:
            raise FormatError("file too short for a nacrith stream with a seek table")
        fp.seek(size - end_size)
        tail = fp.read(end_size)
        if v == 2 and (tail[0] != 0 or tail[-len(END_MAGIC):] != END_MAGIC):
            raise FormatError("no seek table (a stream of at most one data frame)")
        if tail[0] != 0:
            raise FormatError("no end frame at the end of the file (truncated?)")
        self.end: EndFrame = read_end(tail, 0, v)[0]
        end_off = size - end_size
        if self.end.seek_offset >= end_off:
            raise FormatError("end frame: seek table offset out of range")
        self.entries = []
        if self.end.seek_offset:
            table = self._item(self.end.seek_offset, SeekTable)
            self.entries = table.entries
            if self._last_end != end_off:
                raise FormatError("seek table does not end at the end frame")
        self.starts = []
        pos = 0
        for e in self.entries:
            self.starts.append(pos)
            pos += e.raw_size
        if v == 2:
            self.end.total_size = pos
        if self.entries and pos != self.end.total_size:
            raise FormatError("seek table sizes do not add up to the total size")
        if self.entries:
            self._check_table(size)
        self._params_cache: dict = {}

    def _check_table(self, size: int) -> None:
        """Walk the stream's frames once from the start (compressed bytes only, nothing decoded)
        so that ``StreamParser`` checks the seek table against them: the table has no checksum of
        its own, and a wrong RawSize or offset in it would otherwise place a correct frame at the
        wrong uncompressed offset. Raises FormatError (also for a file of several streams)."""
        p = StreamParser()
        self._fp.seek(0)
        while p.end is None:
            chunk = self._fp.read(READ)
            if not chunk:
                p.close()
            p.feed(chunk)
            while p.next() is not None:
                pass
        if p.offset != size or p.unused_data:
            raise FormatError("several concatenated streams (no index)")

    def _item(self, offset: int, kind, params: LLMParams | None = None):
        """The item of type ``kind`` at stream ``offset`` (read through the parser, with
        ``params`` in force)."""
        p = StreamParser(offset=offset, header=self.header, params=params)
        self._fp.seek(offset)
        while True:
            item = p.next()
            if item is not None:
                if not isinstance(item, kind):
                    raise FormatError(f"offset {offset}: expected a {kind.__name__}, found {type(item).__name__}")
                self._last_end = p.offset
                return item
            chunk = self._fp.read(READ)
            if not chunk:
                p.close()
            p.feed(chunk)

    def frame_at(self, offset: int) -> int:
        """Index of the frame holding uncompressed ``offset`` (bisect)."""
        return max(0, bisect.bisect_right(self.starts, offset) - 1)

    def read_frame(self, session: Session, i: int) -> bytes:
        """Original bytes of data frame ``i``, checksum verified."""
        e = self.entries[i]
        params = self.header.params  # version 2: params in the header have ParamsOffset 0
        if e.params_offset:
            if e.params_offset not in self._params_cache:
                self._params_cache[e.params_offset] = self._item(e.params_offset, LLMParams)
            params = self._params_cache[e.params_offset]
        fr = self._item(e.offset, Frame, params)
        if fr.raw_size != e.raw_size:
            raise FormatError(f"frame at offset {e.offset} does not match the seek table")
        if fr.kind == FRAME_LLM and params is None:
            raise FormatError(f"llm frame at offset {e.offset} has no params frame in the seek table")
        return decode_frame(session, fr, self.starts[i])
