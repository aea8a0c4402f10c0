"""The one reader of the stream grammar ``header (params | data frame)* [seek table] end`` and of
concatenated streams (``codec/FORMAT.md``, "Stream", "Concatenation"). Pure."""

from __future__ import annotations

from ..errors import FormatError, TruncatedError
from .frames import EndFrame, Frame, SeekEntry, SeekTable, read_end, read_frame, read_seek_table
from .header import LLMParams, StreamHeader, read_header, read_params
from .wire import END_FRAME, END_FRAME_V2, END_MAGIC, FRAME_END, FRAME_LLM, FRAME_PARAMS, FRAME_SEEK, MAGIC, total_hasher

def _at(e: Exception, base: int) -> Exception:
    """``e`` with buffer offsets in its message made stream offsets (``base``: stream offset
    of the buffer's first byte)."""
    if base:
        import re

        msg = re.sub(r"offset (\d+)", lambda m: f"offset {int(m.group(1)) + base}", str(e))
        return type(e)(msg)
    return e


class StreamParser:
    """Pull parser of a nacrith stream: ``header (params | data frame)* [seek table] end``.

    Feed bytes with ``feed(data)`` (or give the whole stream as ``data``); ``next()`` returns the
    next item: ``StreamHeader``, ``LLMParams``, ``Frame`` (``params`` set for LLM frames),
    ``SeekTable`` or ``EndFrame``, or ``None`` when it needs more input. Offsets in items and in
    errors are stream offsets. Structure is checked here (LLM frames follow a params frame, the
    seek table lists exactly the data frames before it, the end frame points to it); content
    checksums are the decoder's job. Bytes after the end frame are kept in ``unused_data``.

    Args:
        data: the whole stream (parsed in place: payloads are views of it), or None to feed.
        offset, header, params: start in the middle of a stream (random access): the stream
            offset of the first byte given, and the header and params in force there. The seek
            table is then not checked against the frames.

    Raises (from ``next``):
        FormatError: malformed stream. TruncatedError: only from ``close()`` (input ended early).
    """

    def __init__(self, data=None, *, offset: int = 0, header: StreamHeader | None = None,
                 params: LLMParams | None = None):
        self._fed = data is None
        self._buf = bytearray() if data is None else memoryview(data)
        self._pos = 0  # index in _buf of the next unparsed byte
        self._base = offset  # stream offset of _buf[0]
        self.header = header
        self.params = params
        self._params_at = 0
        self._check_seek = offset == 0
        self.entries: list[SeekEntry] = []
        self.seek: SeekTable | None = None
        self.end: EndFrame | None = None
        self.unused_data = b""
        self._last_checksum = b""

    @property
    def offset(self) -> int:
        """Stream offset of the next unparsed byte."""
        return self._base + self._pos

    def feed(self, data) -> None:
        if not self._fed:
            raise ValueError("parser was given the whole stream")
        if self.end is not None:
            self.unused_data += bytes(data)
            return
        if self._pos:
            del self._buf[:self._pos]
            self._base += self._pos
            self._pos = 0
        self._buf += data

    def __iter__(self):
        while (item := self.next()) is not None:
            yield item
        self.close()

    def next(self):
        if self.end is not None:
            return None
        try:
            with memoryview(self._buf) as buf:
                item, end = self._parse(buf[self._pos:])
        except TruncatedError:
            return None
        self._pos += end
        return item

    def close(self) -> None:
        """Declare the input complete. Raises TruncatedError when no end frame was read."""
        if self.end is None:
            if self.header is None and not len(self._buf):
                raise TruncatedError("empty input: not a nacrith stream")
            with memoryview(self._buf) as buf:  # its message says what is cut short
                self._parse(buf[self._pos:])
            raise TruncatedError(f"truncated stream: input ends at offset {self._base + len(self._buf)}, "
                                 "before the end frame")

    def _end_v2(self, buf, at: int):
        """Version 2 end frame: one byte for at most one data frame (the whole-stream checksum
        is then the frame's), else with the checksum and the seek table's offset."""
        n = len(self.entries)
        if self._check_seek and n <= 1:
            if self.seek is not None:
                raise FormatError(f"seek table before the end frame at offset {at} of a stream with {n} frames")
            digest = self._last_checksum if n else total_hasher().digest()
            return EndFrame(sum(e.raw_size for e in self.entries), digest, 0, 0), 1
        if self._check_seek and self.seek is None:
            raise FormatError(f"stream of {n} data frames without a seek table before offset {at}")
        try:
            fr, end = read_end(buf, 0, 2)
        except (FormatError, TruncatedError) as e:
            raise _at(e, at) from None
        fr.total_size = sum(e.raw_size for e in self.entries)
        return fr, end

    def _parse(self, buf):
        """Parse the item at ``buf[0]`` (stream offset ``self.offset``): (item, its length)."""
        at = self.offset

        def read(fn, *args):  # buffer offsets in read_*'s messages become stream offsets
            try:
                return fn(buf, 0, *args)
            except (FormatError, TruncatedError) as e:
                raise _at(e, at) from None

        if self.header is None:
            self.header, end = read(read_header)
            if self.header.params is not None:
                self.params = self.header.params  # in force from the start (ParamsOffset 0)
            return self.header, end
        if not len(buf):
            raise TruncatedError(f"truncated stream: no end frame at offset {at}")
        kind = buf[0]
        version = self.header.version
        if kind == FRAME_PARAMS:
            self.params, end = read(read_params, version)
            self._params_at = at
            return self.params, end
        if kind == FRAME_SEEK:
            if self.seek is not None:
                raise FormatError(f"second seek table at offset {at}")
            entries, end = read(read_seek_table, at)
            if self._check_seek and entries != self.entries:
                raise FormatError(f"seek table at offset {at} does not match the stream's frames")
            self.seek = SeekTable(entries, at)
            return self.seek, end
        if kind == FRAME_END and version == 2:
            fr, end = self._end_v2(buf, at)
        else:
            fr, end = read(read_frame, self.header.frame_size)
        fr.offset += at
        if isinstance(fr, EndFrame):
            want = self.seek.offset if self.seek else 0
            if fr.seek_offset != want:
                raise FormatError(f"end frame points to a seek table at {fr.seek_offset}, found {want}")
            self.end = fr
            self.unused_data = bytes(buf[end:])
            return fr, len(buf)
        if self.seek is not None:
            raise FormatError(f"data frame at offset {at} after the seek table")
        fr.version = version
        if fr.kind == FRAME_LLM:
            if self.params is None:
                raise FormatError(f"llm frame at offset {at} without a preceding params frame")
            fr.params = self.params
        if self._fed:
            fr.payload = memoryview(bytes(fr.payload))  # detach from the buffer
        self._last_checksum = fr.checksum
        self.entries.append(SeekEntry(fr.raw_size, at, self._params_at if fr.kind == FRAME_LLM else 0))
        return fr, end


def iter_frames(data):
    """Each data frame of the whole stream ``data`` (``Frame``, with ``params`` set), then the
    ``EndFrame``; trailing data is an error. Structure only, content checksums unchecked.

    Raises: FormatError, TruncatedError (malformed stream)."""
    p = StreamParser(data)
    for item in p:
        if isinstance(item, (Frame, EndFrame)):
            yield item
    if p.unused_data:
        raise trailing_error(p.unused_data)


def trailing_error(data) -> FormatError:
    """The error for bytes after an end frame that do not start another stream (counted: all of
    them, however they were read; zero bytes named as such)."""
    data = bytes(data)
    return FormatError(f"{len(data)} bytes of trailing data after the end frame"
                       + (" (all zero bytes)" if data and not data.strip(b"\0") else ""))


class Streams:
    """Concatenated streams, as gzip, xz and zstd read them (``codec/FORMAT.md``,
    "Concatenation"): the one place that decides where a stream ends and whether the bytes after
    it start another (the magic number) or are trailing data.

    ``feed(data)`` then ``next()`` as ``StreamParser``: each item of each stream in turn (a
    ``StreamHeader`` starts a stream), ``None`` when more input is needed. ``parser`` is the
    current stream's ``StreamParser``, ``start`` its offset in the input, ``count`` the streams
    whose end frame was read. ``trailing``: the bytes after an end frame do not start a stream
    (they are ``unused_data``; ``trailing_error()`` is the error to report). ``close()`` raises
    TruncatedError when a stream (or a magic number) is incomplete.
    """

    def __init__(self, data=None, single: bool = False):
        self.single = single  # one stream only: what follows its end frame is left in unused_data
        self._view = None if data is None else memoryview(data)  # the whole input, parsed in place
        self.parser = StreamParser(self._view)
        self.start = 0
        self.count = 0
        self.trailing = False
        self._rest = bytearray()  # bytes after the last end frame, not yet known to start a stream

    @property
    def eof(self) -> bool:
        """The input so far ends exactly at the end of a stream (``single``: the stream ended)."""
        if self.single:
            return self.parser.end is not None
        return self.parser.end is not None and not self._rest and not self.parser.unused_data

    @property
    def unused_data(self) -> bytes:
        return bytes(self.parser.unused_data) + bytes(self._rest)

    def trailing_error(self) -> FormatError:
        return trailing_error(self.unused_data)

    def stream_size(self) -> int:
        """Bytes of the current stream read so far (all of it once its end frame is read)."""
        return self.parser.offset - len(self.parser.unused_data)

    def feed(self, data) -> None:
        if self._view is not None:
            raise ValueError("Streams was given the whole input")
        if self.parser.end is None:
            self.parser.feed(data)
        else:
            self._rest += data

    def next(self):
        while True:
            if self.parser.end is None:
                item = self.parser.next()
                if isinstance(item, EndFrame):
                    self.count += 1
                return item
            if self.trailing or self.single:
                return None
            if self._view is not None:
                rest = self._view[self.start + self.stream_size():]
            else:
                rest = bytes(self.parser.unused_data) + bytes(self._rest)
            n = min(len(rest), len(MAGIC))
            if bytes(rest[:n]) != MAGIC[:n]:
                self.trailing = True
                return None
            if n < len(MAGIC):
                if self._view is not None and n:
                    raise TruncatedError("truncated stream: incomplete magic number of a concatenated stream")
                return None  # the next stream's magic is not complete yet
            self.start += self.stream_size()
            if self._view is not None:
                self.parser = StreamParser(rest)
            else:
                self.parser = StreamParser()
                self.parser.feed(rest)
                self._rest = bytearray()

    def close(self) -> None:
        if self.parser.end is None:
            self.parser.close()
        elif not self.trailing and not self.single and self.unused_data:
            raise TruncatedError("truncated stream: incomplete magic number of a concatenated stream")


READ = 1 << 16


class Index:
    """The frame index of a seekable file holding one stream, from its end frame and seek table
    (``codec/FORMAT.md``, "End frame": found from the end of the file), checked against the
    stream's frames before it is trusted (the table has no checksum of its own: a wrong RawSize
    would place an intact frame at the wrong offset). ``frame(i)`` reads data frame ``i`` with the
    params in force for it. Raises FormatError for a file it cannot index (at most one data frame,
    several concatenated streams, a table that does not match): read it from the start instead."""

    def __init__(self, fp):
        import io

        fp.seek(0, io.SEEK_END)
        size = fp.tell()
        self._fp = fp
        self.header: StreamHeader | None = None
        self.header = self.item(0, StreamHeader)
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
        self.entries: list[SeekEntry] = []
        if self.end.seek_offset:
            table = self.item(self.end.seek_offset, SeekTable)
            self.entries = table.entries
            if self._last_end != end_off:
                raise FormatError("seek table does not end at the end frame")
        self.starts: list[int] = []
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
        self._params: dict = {}

    def _check_table(self, size: int) -> None:
        """Walk the stream's frames once from the start (compressed bytes only, nothing decoded)
        so that ``StreamParser`` checks the seek table against them. Raises FormatError (also for
        a file of several streams)."""
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

    def item(self, offset: int, kind, params: LLMParams | None = None):
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
        import bisect

        return max(0, bisect.bisect_right(self.starts, offset) - 1)

    def frame(self, i: int) -> Frame:
        """Data frame ``i`` with the params in force for it (the header's, or the params frame
        its seek entry names)."""
        e = self.entries[i]
        params = self.header.params  # version 2: params in the header have ParamsOffset 0
        if e.params_offset:
            if e.params_offset not in self._params:
                self._params[e.params_offset] = self.item(e.params_offset, LLMParams)
            params = self._params[e.params_offset]
        fr = self.item(e.offset, Frame, params)
        if fr.raw_size != e.raw_size:
            raise FormatError(f"frame at offset {e.offset} does not match the seek table")
        if fr.kind == FRAME_LLM and params is None:
            raise FormatError(f"llm frame at offset {e.offset} has no params frame in the seek table")
        return fr
