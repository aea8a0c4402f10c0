"""Streaming API, modelled on the standard library's ``lzma`` module.

* ``NacrithCompressor`` / ``NacrithDecompressor``: incremental, bounded memory (one frame of input
  or output at a time, plus the model).
* ``open()`` / ``NacrithFile``: a file object (``io.BufferedIOBase``) over a compressed file; in
  read mode ``seek`` uses the stream's seek table to decode only the frame holding the target.

Source: CPython ``Lib/lzma.py`` and ``Lib/_compression.py`` (three tiers, file object semantics).
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO

from .codec import (FrameDecoder, Options, Session, StreamEncoder, decode_frame, read_frame,
                    read_header, read_params)
from .container import (END_FRAME, FRAME_LLM, MAX_PARAMS, EndFrame, read_end, read_seek_table,
                        read_varint)
from .errors import FormatError, TruncatedError

_sessions: dict = {}


def get_session(model=None, session: Session | None = None) -> Session:
    """``session`` if given, else one shared ``Session`` per model path (loaded once)."""
    if session is not None:
        return session
    key = None if model is None else os.fspath(model)
    if key not in _sessions:
        _sessions[key] = Session(model)
    return _sessions[key]


class NacrithCompressor:
    """Incremental compressor.

    Args:
        model: GGUF path (default: ``NACRITH_MODEL`` or the embedded model).
        session: a ``Session`` to use instead (wins over ``model``).
        **options: fields of ``Options`` (window, ensemble, frame_size, max_lanes, ...).

    ``compress(data)`` returns the compressed bytes of every frame completed so far (possibly
    b""), ``flush()`` the rest and the stream's end; the object cannot be used after ``flush``.
    Memory: at most one frame (``frame_size`` bytes) of buffered input.
    """

    def __init__(self, *, model=None, session: Session | None = None, **options):
        self._enc = StreamEncoder(get_session(model, session), Options(**options))
        self._done = False

    def compress(self, data) -> bytes:
        if self._done:
            raise ValueError("compressor already flushed")
        return self._enc.feed(data)

    def flush(self) -> bytes:
        if self._done:
            raise ValueError("compressor already flushed")
        self._done = True
        return self._enc.finish()


class NacrithDecompressor:
    """Incremental decompressor (``lzma.LZMADecompressor`` semantics).

    ``decompress(data)`` returns the bytes of every frame completed by ``data``, each verified
    against its checksum. Attributes: ``eof`` (end frame seen and whole-stream checksum
    verified), ``needs_input``, ``unused_data`` (bytes after the end of the stream).

    Raises FormatError, ChecksumError, ModelMismatchError as soon as they are detected.
    """

    def __init__(self, *, model=None, session: Session | None = None):
        self._dec = FrameDecoder(get_session(model, session))

    def decompress(self, data) -> bytes:
        if self._dec.eof:
            raise EOFError("already at end of stream")
        return self._dec.feed(bytes(data))

    @property
    def eof(self) -> bool:
        return self._dec.eof

    @property
    def needs_input(self) -> bool:
        return not self._dec.eof

    @property
    def unused_data(self) -> bytes:
        return self._dec.unused_data


class _SeekIndex:
    """Frame index of a seekable compressed file, read from its end frame and seek table."""

    def __init__(self, fp: BinaryIO):
        fp.seek(0, io.SEEK_END)
        size = fp.tell()
        if size < END_FRAME.size:
            raise TruncatedError("file too short for a nacrith stream")
        fp.seek(0)
        head = fp.read(32)
        self.header, _ = read_header(head, 0)
        fp.seek(size - END_FRAME.size)
        tail = fp.read(END_FRAME.size)
        if tail[0] != 0:
            raise FormatError("no end frame at the end of the file (truncated?)")
        end, _ = read_end(tail, 0)
        self.end: EndFrame = end
        end_off = size - END_FRAME.size
        if end.seek_offset >= end_off:
            raise FormatError("end frame: seek table offset out of range")
        self.entries = []
        if end.seek_offset:
            fp.seek(end.seek_offset)
            blob = fp.read(end_off - end.seek_offset)
            self.entries, used = read_seek_table(blob, 0, end.seek_offset)
            if used != len(blob):
                raise FormatError("seek table does not end at the end frame")
        self.starts = []
        pos = 0
        for e in self.entries:
            self.starts.append(pos)
            pos += e.raw_size
        if self.entries and pos != end.total_size:
            raise FormatError("seek table sizes do not add up to the total size")
        self._fp = fp
        self._params_cache: dict = {}

    def frame_at(self, offset: int) -> int:
        """Index of the frame holding uncompressed ``offset`` (bisect)."""
        import bisect

        return max(0, bisect.bisect_right(self.starts, offset) - 1)

    def read_frame(self, session: Session, i: int) -> bytes:
        e = self.entries[i]
        fp = self._fp
        fp.seek(e.offset)
        head = fp.read(1 + 9 + 9)
        raw_size, p = read_varint(head, 1, "frame size")
        psize, p = read_varint(head, p, "payload size")
        if psize > raw_size or raw_size > self.header.frame_size:
            raise FormatError(f"frame at offset {e.offset}: bad sizes")
        fp.seek(e.offset)
        blob = fp.read(p + 8 + psize)
        fr, _ = read_frame(blob, 0, self.header.frame_size)
        if fr.raw_size != e.raw_size:
            raise FormatError(f"frame at offset {e.offset} does not match the seek table")
        fr.offset = e.offset
        if fr.kind == FRAME_LLM:
            if not e.params_offset:
                raise FormatError(f"llm frame at offset {e.offset} has no params frame in the seek table")
            fr.params = self._params(e.params_offset)
        return decode_frame(session, fr, self.starts[i])

    def _params(self, off: int):
        if off not in self._params_cache:
            self._fp.seek(off)
            blob = self._fp.read(MAX_PARAMS + 16)
            self._params_cache[off] = read_params(blob, 0)[0]
        return self._params_cache[off]


class NacrithFile(io.BufferedIOBase):
    """A file object over a nacrith stream (``lzma.LZMAFile`` semantics).

    Args:
        filename: path (str/bytes/PathLike) or a binary file object.
        mode: "r"/"rb" (read), "w"/"wb" or "x"/"xb" (write), "a"/"ab" (append a new stream).
        model, session, **options: as ``NacrithCompressor`` (options only when writing).

    Reading: ``read``, ``read1``, ``readline``, iteration, ``seek``/``tell`` in uncompressed
    offsets. A seek on a seekable file with a seek table decodes only the target frame;
    otherwise it decodes from the start (slow, as ``lzma``).
    """

    def __init__(self, filename, mode: str = "r", *, model=None, session: Session | None = None, **options):
        mode = mode.replace("b", "")
        if mode not in ("r", "w", "x", "a"):
            raise ValueError(f"invalid mode: {mode!r}")
        if mode == "r" and options:
            raise ValueError("compression options given for reading")
        self._session = get_session(model, session)
        self._mode = mode
        if isinstance(filename, (str, bytes, os.PathLike)):
            self._fp = io.open(filename, mode + "b")
            self._close_fp = True
        elif hasattr(filename, "read") or hasattr(filename, "write"):
            self._fp = filename
            self._close_fp = False
        else:
            raise TypeError("filename must be a str, bytes, PathLike or file object")
        self._pos = 0  # uncompressed position
        if mode == "r":
            self._dec = FrameDecoder(self._session)
            self._buffer = b""
            self._index: _SeekIndex | None = None
            self._next_frame: int | None = None  # set after a seek: read frames via the index
            self._eof = False
        else:
            self._comp = NacrithCompressor(session=self._session, **options)

    # -- io plumbing
    def readable(self) -> bool:
        self._check_open()
        return self._mode == "r"

    def writable(self) -> bool:
        self._check_open()
        return self._mode != "r"

    def seekable(self) -> bool:
        self._check_open()
        return self._mode == "r" and self._fp.seekable()

    def _check_open(self):
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._mode != "r":
                self._fp.write(self._comp.flush())
        finally:
            try:
                if self._close_fp:
                    self._fp.close()
            finally:
                super().close()

    # -- reading
    def _fill(self) -> bool:
        """Decode more; False at end of stream."""
        while not self._buffer:
            if self._eof:
                return False
            if self._next_frame is not None:
                if self._next_frame >= len(self._index.entries):
                    self._eof = True
                    return False
                self._buffer = self._index.read_frame(self._session, self._next_frame)
                self._next_frame += 1
                continue
            chunk = self._fp.read(1 << 16)
            if not chunk:
                self._dec.close()  # raises TruncatedError if incomplete
                self._eof = True
                return False
            self._buffer = self._dec.feed(chunk)
            if self._dec.eof:
                if self._dec.unused_data:
                    raise FormatError("trailing data after the end of the stream")
                self._eof = True
        return True

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        if self._mode != "r":
            raise io.UnsupportedOperation("file not open for reading")
        if size is None or size < 0:
            out = []
            while self._fill():
                out.append(self._buffer)
                self._pos += len(self._buffer)
                self._buffer = b""
            return b"".join(out)
        out = []
        while size > 0 and self._fill():
            piece = self._buffer[:size]
            self._buffer = self._buffer[size:]
            self._pos += len(piece)
            size -= len(piece)
            out.append(piece)
        return b"".join(out)

    def read1(self, size: int = -1) -> bytes:
        self._check_open()
        if not self._fill():
            return b""
        n = len(self._buffer) if size is None or size < 0 else size
        piece, self._buffer = self._buffer[:n], self._buffer[n:]
        self._pos += len(piece)
        return piece

    def peek(self, size: int = 0) -> bytes:
        self._fill()
        return self._buffer

    def readline(self, size: int | None = -1) -> bytes:
        self._check_open()
        out = []
        n = 0
        while self._fill():
            i = self._buffer.find(b"\n")
            take = len(self._buffer) if i < 0 else i + 1
            if size is not None and size >= 0:
                take = min(take, size - n)
            piece, self._buffer = self._buffer[:take], self._buffer[take:]
            out.append(piece)
            n += len(piece)
            self._pos += len(piece)
            if piece.endswith(b"\n") or (size is not None and 0 <= size <= n):
                break
        return b"".join(out)

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if self._mode != "r":
            raise io.UnsupportedOperation("seek is only supported in read mode")
        if whence == io.SEEK_CUR:
            offset = self._pos + offset
        elif whence == io.SEEK_END:
            if self._index is None and self._fp.seekable():
                self._index = _SeekIndex(self._fp)
            if self._index is None:
                while self.read(1 << 20):
                    pass
                offset = self._pos + offset
            else:
                offset = self._index.end.total_size + offset
        elif whence != io.SEEK_SET:
            raise ValueError(f"invalid whence: {whence}")
        offset = max(0, offset)
        if self._fp.seekable():
            if self._index is None:
                self._index = _SeekIndex(self._fp)
            idx = self._index
            if offset >= idx.end.total_size:
                self._buffer, self._pos, self._eof = b"", idx.end.total_size, True
                return self._pos
            if idx.entries:
                i = idx.frame_at(offset)
                raw = idx.read_frame(self._session, i)
                self._buffer = raw[offset - idx.starts[i]:]
                self._next_frame = i + 1
                self._eof = False
                self._pos = offset
                return offset
            # single frame, no seek table: decode from the start
            self._fp.seek(0)
            self._dec, self._buffer, self._pos, self._eof = FrameDecoder(self._session), b"", 0, False
            self._next_frame = None
        elif offset < self._pos:
            raise io.UnsupportedOperation("backward seek on an unseekable file")
        self.read(offset - self._pos)
        return self._pos

    # -- writing
    def write(self, data) -> int:
        self._check_open()
        if self._mode == "r":
            raise io.UnsupportedOperation("file not open for writing")
        b = memoryview(data).cast("B")
        self._fp.write(self._comp.compress(b))
        self._pos += len(b)
        return len(b)


def open(filename, mode: str = "rb", *, model=None, session: Session | None = None,
         encoding: str | None = None, errors: str | None = None, newline: str | None = None, **options):
    """Open a nacrith-compressed file in binary ("rb", "wb", "xb", "ab") or text ("rt", "wt",
    "xt", "at") mode, like ``lzma.open``. Text mode wraps the file in ``io.TextIOWrapper``."""
    if "t" in mode:
        if "b" in mode:
            raise ValueError(f"invalid mode: {mode!r}")
    else:
        if encoding is not None or errors is not None or newline is not None:
            raise ValueError("encoding/errors/newline are only for text mode")
    f = NacrithFile(filename, mode.replace("t", ""), model=model, session=session, **options)
    if "t" in mode:
        return io.TextIOWrapper(f, encoding, errors, newline)
    return f
