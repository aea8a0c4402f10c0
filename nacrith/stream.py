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

from .decoder import ConcatDecoder, FrameDecoder, SeekIndex
from .errors import FormatError
from .policy import GuardedEncoder
from .options import Options
from .session import Session

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
        **options: ``level`` (1..9, ``Options.from_level``) and fields of ``Options`` (window,
            ensemble, frame_size, max_lanes, ...) replacing the level's.

    ``compress(data)`` returns the compressed bytes of every frame completed so far (possibly
    b""), ``flush()`` the rest and the stream's end; the object cannot be used after ``flush``.
    Memory: at most one frame (``frame_size`` bytes) of buffered input.
    """

    def __init__(self, *, model=None, session: Session | None = None, **options):
        self._enc = GuardedEncoder(get_session(model, session), Options.from_level(**options))
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
        self._pending = b""  # output decoded but held back by max_length

    def decompress(self, data, max_length: int = -1) -> bytes:
        """Original bytes of the frames completed so far, at most ``max_length`` of them when
        ``max_length >= 0`` (the rest is kept: call again, with ``b""`` if need be, while
        ``needs_input`` is False). Raises EOFError after the end of the stream, TypeError for
        data that is not bytes-like."""
        data = memoryview(data).cast("B")
        if self.eof:
            raise EOFError("already at end of stream")
        out = self._pending + (self._dec.feed(data) if len(data) or not self._pending else b"")
        if max_length is not None and max_length >= 0:
            out, self._pending = out[:max_length], out[max_length:]
        else:
            self._pending = b""
        return out

    @property
    def eof(self) -> bool:
        """True once the end frame was read, its checksum verified and all output returned."""
        return self._dec.eof and not self._pending

    @property
    def needs_input(self) -> bool:
        """False while output is held back by ``max_length`` or after the end of the stream."""
        return not self._dec.eof and not self._pending

    @property
    def unused_data(self) -> bytes:
        return self._dec.unused_data


class NacrithFile(io.BufferedIOBase):
    """A file object over a nacrith stream (``lzma.LZMAFile`` semantics).

    Args:
        filename: path (str/bytes/PathLike) or a binary file object.
        mode: "r"/"rb" (read), "w"/"wb" or "x"/"xb" (write), "a"/"ab" (append a new stream;
            reading returns the concatenation of the file's streams).
        model, session, **options: as ``NacrithCompressor`` (options only when writing).

    Reading: ``read``, ``read1``, ``readline``, iteration, ``seek``/``tell`` in uncompressed
    offsets. A seek on a seekable file of one stream with a seek table decodes only the target
    frame; otherwise (one frame, several streams) it decodes from the start (slow, as ``lzma``).
    """

    def __init__(self, filename, mode: str = "r", *, model=None, session: Session | None = None, **options):
        mode = mode.replace("b", "")
        if mode not in ("r", "w", "x", "a"):
            raise ValueError(f"invalid mode: {mode!r}")
        if mode == "r" and options:
            raise ValueError("compression options given for reading")
        self._session = get_session(model, session)
        self._session.check_open()
        self._mode = mode
        self._target = None  # (path, temporary path) when writing a named file
        if mode != "r":  # bad options and a bad model raise here, before any file is touched
            self._comp = NacrithCompressor(session=self._session, **options)
        if isinstance(filename, (str, bytes, os.PathLike)):
            if mode == "r":
                self._fp = io.open(filename, "rb")
            else:
                self._fp = self._open_temporary(os.fsdecode(filename), mode)
            self._close_fp = True
        elif hasattr(filename, "read") or hasattr(filename, "write"):
            self._fp = filename
            self._close_fp = False
        else:
            raise TypeError("filename must be a str, bytes, PathLike or file object")
        self._pos = 0  # uncompressed position
        if mode == "r":
            self._dec = ConcatDecoder(self._session)
            self._buffer = b""
            self._index: SeekIndex | None = None
            self._next_frame: int | None = None  # set after a seek: read frames via the index
            self._eof = False

    # -- io plumbing
    def fileno(self) -> int:
        """The file descriptor of the underlying file (as ``lzma.LZMAFile``; while writing a named
        file, that of the temporary file it goes through)."""
        self._check_open()
        return self._fp.fileno()

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

    def _open_temporary(self, path: str, mode: str):
        """Writing a named file goes through a temporary file beside it, put in place by
        ``close``: an error (or a crash) leaves an existing file as it was. ``x`` refuses an
        existing file now, as ``lzma.open`` does; ``a`` appends the new stream at ``close``."""
        import tempfile

        if mode == "x" and os.path.lexists(path):
            raise FileExistsError(17, "File exists", path)
        if mode == "a" and os.path.exists(path) and not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied", path)
        d = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)[:200]}.", suffix=".tmp", dir=d)
        self._target = (path, tmp)
        return os.fdopen(fd, "w+b")

    def _commit(self) -> None:
        """Put the temporary file in place (``w``: replace, ``x``: only if still absent, ``a``:
        append its bytes to the file)."""
        path, tmp = self._target
        self._target = None
        if self._mode == "w":
            if os.path.exists(path):
                try:
                    os.chmod(tmp, os.stat(path).st_mode & 0o7777)
                except OSError:
                    pass
            else:
                mask = os.umask(0)
                os.umask(mask)
                os.chmod(tmp, 0o666 & ~mask)
            os.replace(tmp, path)
        elif self._mode == "x":
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)
            os.link(tmp, path)  # fails if the file appeared meanwhile
            os.unlink(tmp)
        else:
            with io.open(tmp, "rb") as src, io.open(path, "ab") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.unlink(tmp)

    def close(self) -> None:
        if self.closed:
            return
        ok = False
        try:
            if self._mode != "r":
                self._fp.write(self._comp.flush())
            ok = True
        finally:
            try:
                if self._close_fp:
                    self._fp.close()
                if self._target is not None:
                    tmp = self._target[1]
                    try:
                        if ok:
                            self._commit()
                    finally:
                        if os.path.exists(tmp):
                            os.unlink(tmp)
                        self._target = None
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
            if self._dec.trailing:
                raise self._dec.trailing_error()
        return True

    def read(self, size: int | None = -1) -> bytes:
        self._check_readable()
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

    def _check_readable(self):
        self._check_open()
        if self._mode != "r":
            raise io.UnsupportedOperation("file not open for reading")

    def read1(self, size: int = -1) -> bytes:
        self._check_readable()
        if not self._fill():
            return b""
        n = len(self._buffer) if size is None or size < 0 else size
        piece, self._buffer = self._buffer[:n], self._buffer[n:]
        self._pos += len(piece)
        return piece

    def peek(self, size: int = 0) -> bytes:
        self._check_readable()
        self._fill()
        return self._buffer

    def __iter__(self):
        self._check_readable()
        return self

    def readline(self, size: int | None = -1) -> bytes:
        self._check_readable()
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
                self._index = self._make_index()
            if not self._index:
                while self.read(1 << 20):
                    pass
                offset = self._pos + offset
            else:
                offset = self._index.end.total_size + offset
        elif whence != io.SEEK_SET:
            raise ValueError(f"invalid whence: {whence}")
        offset = max(0, offset)
        if self._fp.seekable() and self._index is None:
            self._index = self._make_index()
        if self._index:
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
        if offset < self._pos:  # no index (one frame, several streams): decode from the start
            if not self._fp.seekable():
                raise io.UnsupportedOperation("backward seek on an unseekable file")
            self._fp.seek(0)
            self._dec, self._buffer, self._pos, self._eof = ConcatDecoder(self._session), b"", 0, False
            self._next_frame = None
        self.read(offset - self._pos)
        return self._pos

    def _make_index(self):
        """The file's ``SeekIndex``, or False when it has none (one frame, several streams: a
        real defect is then found by reading it from the start)."""
        pos = self._fp.tell()
        try:
            return SeekIndex(self._fp)
        except FormatError:
            return False
        finally:
            self._fp.seek(pos)

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
