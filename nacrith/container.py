"""The nacrith stream format: header, frames, end frame (``codec/FORMAT.md`` is normative).

Pure: parsing needs no numpy, llama.cpp or native import. ``StreamParser`` is the one reader of
the stream grammar ``header (params | data frame)* [seek table] end``; the decoder, ``-t``,
``-l`` and random access (``nacrith.decoder.SeekIndex``) all use it.

All integers are little-endian. Every length is checked against the bytes that remain and
against caps before anything is allocated.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from .errors import FormatError, TruncatedError
from .params import EnsembleParams, Window

MAGIC = b"\x89NCR\r\n\x1a\n"
VERSION = 1
MAX_PARAMS = 1 << 16  # bytes of a parameter block
MAX_FRAME_SIZE = 1 << 30  # original bytes per frame
MAX_LANES = 4096

FRAME_END = 0
FRAME_STORED = 1
FRAME_ZSTD = 2
FRAME_LLM = 3
FRAME_PARAMS = 4
FRAME_LZMA = 5
FRAME_SEEK = 6
FRAME_LZMA2 = 7
FRAME_NAMES = {FRAME_STORED: "stored", FRAME_ZSTD: "zstd", FRAME_LLM: "llm", FRAME_PARAMS: "params",
               FRAME_LZMA: "lzma", FRAME_SEEK: "seek", FRAME_LZMA2: "lzma2"}
DATA_FRAMES = (FRAME_STORED, FRAME_ZSTD, FRAME_LLM, FRAME_LZMA, FRAME_LZMA2)
END_MAGIC = b"NCRE"
END_FRAME = struct.Struct("<BQ8sQ4s")  # type 0, total size, checksum, seek table offset, magic
MAX_SEEK_ENTRIES = 1 << 24

# parameter keys; < 0x80 are critical (a decoder must understand them), >= 0x80 informational
K_MODEL_ID = 0x01
K_BACKEND = 0x02
K_VOCAB = 0x03
K_WINDOW = 0x04
K_ENSEMBLE = 0x05
K_MODEL_NAME = 0x80
K_WRITER = 0x81



def frame_checksum(data: bytes) -> bytes:
    """8-byte BLAKE2b (digest_size=8, no key) of a frame's original bytes."""
    return hashlib.blake2b(data, digest_size=8).digest()


def total_hasher():
    """Incremental BLAKE2b (digest_size=8, no key) over the whole original content."""
    return hashlib.blake2b(digest_size=8)


def varint(n: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, least significant group first, high bit = more."""
    if n < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(buf, pos: int, what: str) -> tuple[int, int]:
    """Parse a canonical LEB128 varint of at most 9 bytes (< 2^63). Returns (value, new pos)."""
    n = 0
    for i in range(9):
        _need(buf, pos + i, 1, what)
        b = buf[pos + i]
        n |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            if b == 0 and i > 0:
                raise FormatError(f"non-canonical varint for {what} at offset {pos}")
            return n, pos + i + 1
    raise FormatError(f"varint for {what} at offset {pos} is too long")


@dataclass
class StreamHeader:
    """The stream header: format version and the most original bytes per frame."""

    frame_size: int

    def encode(self) -> bytes:
        return MAGIC + bytes([VERSION, 0]) + varint(self.frame_size)


@dataclass
class LLMParams:
    """Everything a decoder needs for the LLM frames that follow a params frame.

    model_id: the first 16 bytes of the GGUF file's sha256; backend_id: BLAKE2b-64 of the
    backend fingerprint (``nacrith.backend.fingerprint``); backend: a short label of it for
    messages; n_vocab, bos: tokenizer facts checked against the model; window: sliding KV window
    (tokens); ensemble: hyper-parameters of the n-gram, bias, mixer and skip
    (``nacrith.ensemble``); model_name, writer: informational.
    """

    model_id: bytes
    backend_id: bytes
    backend: str
    n_vocab: int
    bos: int
    window: Window
    ensemble: EnsembleParams
    model_name: str = ""
    writer: str = ""

    def encode(self) -> bytes:
        """The params frame (type, block length, block)."""
        entries = [
            (K_MODEL_ID, self.model_id),
            (K_BACKEND, self.backend_id + self.backend.encode()[:64]),
            (K_VOCAB, struct.pack("<II", self.n_vocab, self.bos)),
            (K_WINDOW, struct.pack("<III", self.window.size, self.window.sink, self.window.slide)),
            (K_ENSEMBLE, self.ensemble.encode()),
            (K_MODEL_NAME, self.model_name.encode()[:48]),
        ]
        if self.writer:
            entries.append((K_WRITER, self.writer.encode()[:64]))
        body = b"".join(bytes([k]) + varint(len(v)) + v for k, v in entries)
        return bytes([FRAME_PARAMS]) + varint(len(body)) + body


def _need(buf, pos: int, n: int, what: str) -> None:
    if pos + n > len(buf):
        raise TruncatedError(f"truncated stream: {what} needs {n} bytes at offset {pos}, "
                             f"{max(0, len(buf) - pos)} left")


def read_header(buf, pos: int = 0) -> tuple[StreamHeader, int]:
    """Parse the stream header at ``buf[pos:]``. Returns (header, offset after it).

    Raises:
        FormatError: not a nacrith stream, unsupported version, reserved flags, bad frame size.
        TruncatedError: the header is cut short.
    """
    head = bytes(buf[pos:pos + len(MAGIC)])
    if not head:
        raise TruncatedError("empty input: not a nacrith stream")
    if head != MAGIC:
        if len(head) < len(MAGIC) and MAGIC.startswith(head):
            raise TruncatedError("truncated stream: incomplete magic number")
        raise FormatError("not a nacrith stream (bad magic number)")
    pos += len(MAGIC)
    _need(buf, pos, 2, "header")
    version, flags = buf[pos], buf[pos + 1]
    if version != VERSION:
        raise FormatError(f"unsupported format version {version} (this nacrith reads {VERSION})")
    if flags != 0:
        raise FormatError(f"reserved header flags set (0x{flags:02x})")
    frame_size, pos = read_varint(buf, pos + 2, "frame size")
    if not 1 <= frame_size <= MAX_FRAME_SIZE:
        raise FormatError(f"frame size {frame_size} out of range [1, {MAX_FRAME_SIZE}]")
    return StreamHeader(frame_size), pos


def read_params(buf, pos: int) -> tuple[LLMParams, int]:
    """Parse a params frame at ``buf[pos]`` (type byte included). Returns (params, next offset)."""
    start = pos
    hlen, pos = read_varint(buf, pos + 1, "params length")
    if hlen > MAX_PARAMS:
        raise FormatError(f"params frame at offset {start}: length {hlen} exceeds {MAX_PARAMS}")
    _need(buf, pos, hlen, "params frame")
    end = pos + hlen
    vals: dict[int, bytes] = {}
    while pos < end:
        k = buf[pos]
        n, pos = read_varint(buf, pos + 1, "parameter length")
        if pos + n > end:
            raise FormatError(f"parameter 0x{k:02x} overruns the params frame at offset {start}")
        if k in vals:
            raise FormatError(f"duplicate parameter 0x{k:02x} at offset {start}")
        vals[k] = bytes(buf[pos:pos + n])
        pos += n
    known = {K_MODEL_ID: 16, K_VOCAB: 8, K_WINDOW: 12, K_ENSEMBLE: None, K_BACKEND: None}
    for k in vals:
        if k < 0x80 and k not in known:
            raise FormatError(f"unsupported critical parameter 0x{k:02x} (newer writer?)")
    for k, size in known.items():
        if k not in vals:
            raise FormatError(f"params frame at offset {start} lacks parameter 0x{k:02x}")
        if size is not None and len(vals[k]) != size:
            raise FormatError(f"parameter 0x{k:02x} has {len(vals[k])} bytes, expected {size}")
    n_vocab, bos = struct.unpack("<II", vals[K_VOCAB])
    size, sink, slide = struct.unpack("<III", vals[K_WINDOW])
    if not (0 < n_vocab < (1 << 22) and bos < n_vocab):
        raise FormatError(f"bad vocabulary parameters ({n_vocab}, {bos})")
    try:
        window = Window(size, sink, slide)
    except ValueError as e:
        raise FormatError(str(e)) from None
    try:
        ensemble = EnsembleParams.decode(vals[K_ENSEMBLE])
    except ValueError as e:
        raise FormatError(f"params frame at offset {start}: {e}") from None
    if len(vals[K_BACKEND]) < 8:
        raise FormatError("backend parameter shorter than its 8-byte hash")
    backend_id, backend = vals[K_BACKEND][:8], vals[K_BACKEND][8:].decode("utf-8", "replace")
    name = vals.get(K_MODEL_NAME, b"").decode("utf-8", "replace")
    writer = vals.get(K_WRITER, b"").decode("utf-8", "replace")
    return LLMParams(vals[K_MODEL_ID], backend_id, backend, n_vocab, bos, window, ensemble, name, writer), end


@dataclass
class Frame:
    """One data frame: ``kind`` (FRAME_*), ``raw_size`` original bytes, ``payload`` (memoryview),
    ``checksum`` (8 bytes), ``offset`` (of the frame in the stream), ``params`` (the LLMParams in
    force, or None)."""

    kind: int
    raw_size: int
    payload: memoryview
    checksum: bytes
    offset: int
    params: LLMParams | None = None


@dataclass
class EndFrame:
    """The end frame (fixed 29 bytes, so it can be read from the end of a file): total original
    size, BLAKE2b-64 of all original bytes, offset of the seek table (0: none)."""

    total_size: int
    checksum: bytes
    offset: int
    seek_offset: int = 0


@dataclass
class SeekEntry:
    """One data frame in the seek table: its original bytes, its offset in the stream, and the
    offset of the params frame in force for it (0: none)."""

    raw_size: int
    offset: int
    params_offset: int


def write_frame(kind: int, raw: bytes, payload: bytes) -> bytes:
    return bytes([kind]) + varint(len(raw)) + varint(len(payload)) + frame_checksum(raw) + payload


def write_end(total_size: int, total_digest: bytes, seek_offset: int = 0) -> bytes:
    return END_FRAME.pack(FRAME_END, total_size, total_digest, seek_offset, END_MAGIC)


def write_seek_table(entries: list[SeekEntry]) -> bytes:
    """Seek table frame: type 6, entry count, then per data frame: raw size, offset delta from
    the previous data frame (the first: from the stream start), params frame offset (0: none)."""
    out = [bytes([FRAME_SEEK]), varint(len(entries))]
    prev = 0
    for e in entries:
        out += [varint(e.raw_size), varint(e.offset - prev), varint(e.params_offset)]
        prev = e.offset
    return b"".join(out)


def read_seek_table(buf, pos: int, limit: int) -> tuple[list[SeekEntry], int]:
    """Parse the seek table frame at ``buf[pos]``; offsets must increase and stay below ``limit``."""
    count, p = read_varint(buf, pos + 1, "seek table count")
    if count > MAX_SEEK_ENTRIES:
        raise FormatError(f"seek table at offset {pos}: {count} entries")
    _need(buf, p, 3 * count, "seek table")  # each entry is at least 3 bytes
    entries, prev = [], 0
    for _ in range(count):
        raw, p = read_varint(buf, p, "seek entry size")
        delta, p = read_varint(buf, p, "seek entry offset")
        params, p = read_varint(buf, p, "seek entry params")
        off = prev + delta
        if (entries and delta == 0) or off >= limit or params >= max(off, 1) and params != 0:
            raise FormatError(f"seek table at offset {pos}: bad entry")
        entries.append(SeekEntry(raw, off, params))
        prev = off
    return entries, p


def read_end(buf, pos: int) -> tuple[EndFrame, int]:
    _need(buf, pos, END_FRAME.size, "end frame")
    _, total, digest, seek, magic = END_FRAME.unpack_from(buf, pos)
    if magic != END_MAGIC:
        raise FormatError(f"bad end frame at offset {pos}")
    return EndFrame(total, digest, pos, seek), pos + END_FRAME.size


def _at(e: Exception, base: int) -> Exception:
    """``e`` with buffer offsets in its message made stream offsets (``base``: stream offset
    of the buffer's first byte)."""
    if base:
        import re

        msg = re.sub(r"offset (\d+)", lambda m: f"offset {int(m.group(1)) + base}", str(e))
        return type(e)(msg)
    return e


@dataclass
class SeekTable:
    """The seek table frame: one ``SeekEntry`` per data frame, and its own stream offset."""

    entries: list
    offset: int


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
            return self.header, end
        if not len(buf):
            raise TruncatedError(f"truncated stream: no end frame at offset {at}")
        kind = buf[0]
        if kind == FRAME_PARAMS:
            self.params, end = read(read_params)
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
        if fr.kind == FRAME_LLM:
            if self.params is None:
                raise FormatError(f"llm frame at offset {at} without a preceding params frame")
            fr.params = self.params
        if self._fed:
            fr.payload = memoryview(bytes(fr.payload))  # detach from the buffer
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
        raise FormatError(f"{len(p.unused_data)} bytes of trailing data after the end frame")


def read_frame(buf, pos: int, frame_size: int):
    """Parse the data or end frame at ``buf[pos:]``. Returns (Frame | EndFrame, next offset)."""
    _need(buf, pos, 1, "frame type")
    kind = buf[pos]
    if kind == FRAME_END:
        return read_end(buf, pos)
    if kind not in DATA_FRAMES:
        raise FormatError(f"unknown frame type {kind} at offset {pos}")
    raw_size, p = read_varint(buf, pos + 1, "frame size")
    psize, p = read_varint(buf, p, "payload size")
    if raw_size > frame_size or raw_size == 0:
        raise FormatError(f"frame at offset {pos} declares {raw_size} bytes (frame size is {frame_size})")
    if psize > raw_size:
        raise FormatError(f"frame at offset {pos}: payload of {psize} bytes for {raw_size} original bytes")
    _need(buf, p, 8, "frame checksum")
    checksum = bytes(buf[p:p + 8])
    p += 8
    _need(buf, p, psize, f"frame payload at offset {pos}")
    if kind == FRAME_STORED and psize != raw_size:
        raise FormatError(f"stored frame at offset {pos}: payload {psize} != size {raw_size}")
    return Frame(kind, raw_size, memoryview(buf)[p:p + psize], checksum, pos), p + psize


def write_llm_payload(lane_tokens: list[int], streams: list[bytes]) -> bytes:
    head = varint(len(streams)) + b"".join(varint(n) + varint(len(s)) for n, s in zip(lane_tokens, streams))
    return head + b"".join(streams)


def read_llm_payload(payload: memoryview, raw_size: int, offset: int) -> tuple[list[int], list[memoryview]]:
    """Split an LLM frame payload into (tokens per lane, coded stream per lane)."""
    n_lanes, pos = read_varint(payload, 0, "lane count")
    if not 1 <= n_lanes <= MAX_LANES:
        raise FormatError(f"llm frame at offset {offset}: {n_lanes} lanes")
    counts, sizes = [], []
    for _ in range(n_lanes):
        n, pos = read_varint(payload, pos, "lane tokens")
        s, pos = read_varint(payload, pos, "lane stream size")
        counts.append(n)
        sizes.append(s)
    if sum(counts) > raw_size:
        raise FormatError(f"llm frame at offset {offset}: {sum(counts)} tokens for {raw_size} bytes")
    if pos + sum(sizes) != len(payload):
        raise FormatError(f"llm frame at offset {offset}: lane streams do not fill the payload")
    streams = []
    for s in sizes:
        streams.append(payload[pos:pos + s])
        pos += s
    return counts, streams
