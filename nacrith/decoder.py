"""The stream decoder: stream bytes -> items of the format's reader (``nacrith.format.Streams``,
concatenated streams included) -> original bytes of each frame (``nacrith.llm_frame``,
``nacrith.binary``), every frame checked against its checksum before it is returned and each
stream's output against its end frame's. ``SeekIndex`` decodes one frame of a seekable file
through the format's ``Index``.
"""

from __future__ import annotations

from typing import BinaryIO, Callable

from . import binary
from .errors import ChecksumError, FormatError
from .format import FRAME_LLM, FRAME_NAMES, EndFrame, Frame, Index, Streams, frame_checksum, total_hasher
from .llm_frame import decode_llm_frame

Progress = Callable[[int], None]


def decode_frame(engine, fr: Frame, out_offset: int = 0, progress: Progress | None = None) -> bytes:
    """Original bytes of one data frame, checksum verified (``engine``: an Engine; only LLM
    frames use it).

    Raises FormatError (corrupt payload), ChecksumError, ModelMismatchError.
    """
    if fr.kind == FRAME_LLM:
        raw = decode_llm_frame(engine, fr, progress)
    else:
        raw = binary.decode(fr)
    if len(raw) != fr.raw_size or frame_checksum(raw) != fr.checksum:
        raise ChecksumError(f"frame at offset {fr.offset} ({FRAME_NAMES[fr.kind]}, output bytes "
                            f"{out_offset}..{out_offset + fr.raw_size}): checksum mismatch")
    if progress and fr.kind != FRAME_LLM:
        progress(len(raw))
    return raw


class ConcatDecoder:
    """Incremental reader of one or more concatenated streams, as gzip, xz and zstd read them
    (``cat a.nc b.nc | nacrith -d``, files appended to with ``nacrith.open(..., "a")``):
    ``feed(chunk)`` returns the original bytes of every frame that became complete, each verified
    against its checksum before it is returned; each stream's end frame verifies its whole-stream
    checksum (the seek table is checked against the frames by the format's parser). LLM frames go
    to the session's frame scheduler (in this process, or on workers with a bounded number in
    flight), binary frames are decoded in this process; output stays in input order. Memory: the
    input and output of the frames in flight.

    ``eof``: the input so far ends exactly at the end of a stream. ``trailing``: bytes after the
    end of a stream do not start another one (they are in ``unused_data``; the caller reports
    them, ``trailing_error()``). ``streams``: streams completed.
    """

    def __init__(self, session, progress: Progress | None = None, single: bool = False):
        session.check_open()
        self.session = session
        self.progress = progress
        self.reader = Streams(single=single)
        self._sched = session.scheduler(progress)
        self._hasher = total_hasher()
        self._queued = 0  # output offset (in the current stream) of the next frame submitted
        self._stream_out = 0  # bytes of the current stream output so far
        self.size = 0  # bytes output so far

    @property
    def eof(self) -> bool:
        return self.reader.eof

    @property
    def trailing(self) -> bool:
        return self.reader.trailing

    @property
    def streams(self) -> int:
        return self.reader.count

    @property
    def needs_input(self) -> bool:
        return not self.eof

    @property
    def unused_data(self) -> bytes:
        return self.reader.unused_data if self.reader.parser.end is not None else b""

    @property
    def parser(self):
        """The format parser of the current stream."""
        return self.reader.parser

    def trailing_error(self) -> FormatError:
        return self.reader.trailing_error()

    def _done(self, results: list, out: list) -> None:
        for _, raw in results:
            self._hasher.update(raw)
            self.size += len(raw)
            self._stream_out += len(raw)
            out.append(raw)

    def feed(self, data) -> bytes:
        """Original bytes of the frames ``data`` completes. Raises FormatError, ChecksumError,
        ModelMismatchError as soon as they are detected."""
        self.reader.feed(data)
        out: list[bytes] = []
        while (item := self.reader.next()) is not None:
            if isinstance(item, Frame):
                llm = item.kind == FRAME_LLM
                if llm:
                    item.payload = bytes(item.payload)  # may be sent to another process
                self._done(self._sched.submit(decode_frame, (item, self._queued), None, item.raw_size,
                                              cheap=not llm), out)
                self._queued += item.raw_size
            elif isinstance(item, EndFrame):
                self._done(self._sched.drain(), out)
                if item.total_size != self._stream_out or self._hasher.digest() != item.checksum:
                    raise ChecksumError(f"whole-stream checksum mismatch ({self._stream_out} bytes decoded, "
                                        f"{item.total_size} declared)")
                self._hasher, self._queued, self._stream_out = total_hasher(), 0, 0
        return b"".join(out)

    def close(self) -> None:
        """Declare the input complete. Raises TruncatedError if a stream is incomplete."""
        self.reader.close()


def FrameDecoder(session, progress: Progress | None = None) -> ConcatDecoder:
    """A decoder of one stream (``lzma.LZMADecompressor`` semantics: the bytes after its end frame
    are left in ``unused_data``)."""
    return ConcatDecoder(session, progress, single=True)


def decompress(data: bytes, session, progress: Progress | None = None) -> bytes:
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
        raise d.trailing_error()
    return out


class SeekIndex(Index):
    """Random access to a seekable compressed file of one stream: the format's ``Index`` (its end
    frame and seek table, checked against its frames) and ``read_frame``, which decodes one frame.
    Raises FormatError for a file it cannot index: read it from the start instead."""

    def __init__(self, fp: BinaryIO):
        super().__init__(fp)

    def read_frame(self, engine, i: int) -> bytes:
        """Original bytes of data frame ``i``, checksum verified."""
        return decode_frame(engine, self.frame(i), self.starts[i])
