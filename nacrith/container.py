"""The nacrith stream format: header, frames, end frame (``codec/FORMAT.md`` is normative).

All integers are little-endian. Every length is checked against the bytes that remain and
against caps before anything is allocated.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from .errors import FormatError, TruncatedError
from .lanes import Window

MAGIC = b"\x89NCR\r\n\x1a\n"
VERSION = 1
MAX_HEADER = 1 << 16  # bytes of the parameter block
MAX_FRAME_SIZE = 1 << 30  # original bytes per frame
MAX_LANES = 4096

FRAME_END = 0
FRAME_STORED = 1
FRAME_ZSTD = 2
FRAME_LLM = 3
FRAME_NAMES = {FRAME_STORED: "stored", FRAME_ZSTD: "zstd", FRAME_LLM: "llm"}

# parameter keys; < 0x80 are critical (a decoder must understand them), >= 0x80 informational
K_MODEL_SHA256 = 0x01
K_BACKEND = 0x02
K_VOCAB = 0x03
K_WINDOW = 0x04
K_FRAME_SIZE = 0x05
K_MODEL_NAME = 0x80
K_WRITER = 0x81

FRAME_HEADER = struct.Struct("<BII8s")  # type, raw size, payload size, checksum
END_FRAME = struct.Struct("<BQ16s")  # type (0), total raw size, total checksum
LANE_ENTRY = struct.Struct("<II")  # tokens, stream bytes


def frame_checksum(data: bytes) -> bytes:
    """8-byte BLAKE2b (digest_size=8, no key) of a frame's original bytes."""
    return hashlib.blake2b(data, digest_size=8).digest()


def total_hasher():
    """Incremental BLAKE2b (digest_size=16) over the whole original content."""
    return hashlib.blake2b(digest_size=16)


@dataclass
class StreamParams:
    """Everything a decoder needs from the stream header.

    model_sha256: 32 raw bytes (sha256 of the GGUF file); backend: fingerprint string
    (``nacrith.backend.fingerprint``); n_vocab, bos: tokenizer facts checked against the model;
    window: sliding KV window; frame_size: most original bytes per frame.
    """

    model_sha256: bytes
    backend: str
    n_vocab: int
    bos: int
    window: Window
    frame_size: int
    model_name: str = ""
    writer: str = ""
    extra: dict = field(default_factory=dict)

    def encode(self) -> bytes:
        entries = [
            (K_MODEL_SHA256, self.model_sha256),
            (K_BACKEND, self.backend.encode()),
            (K_VOCAB, struct.pack("<II", self.n_vocab, self.bos)),
            (K_WINDOW, struct.pack("<III", self.window.size, self.window.sink, self.window.slide)),
            (K_FRAME_SIZE, struct.pack("<I", self.frame_size)),
            (K_MODEL_NAME, self.model_name.encode()[:255]),
            (K_WRITER, self.writer.encode()[:255]),
        ]
        body = b"".join(struct.pack("<BH", k, len(v)) + v for k, v in entries)
        return MAGIC + struct.pack("<BBI", VERSION, 0, len(body)) + body


def _need(buf, pos: int, n: int, what: str) -> None:
    if pos + n > len(buf):
        raise TruncatedError(f"truncated stream: {what} needs {n} bytes at offset {pos}, "
                             f"{max(0, len(buf) - pos)} left")


def read_header(buf, pos: int = 0) -> tuple[StreamParams, int]:
    """Parse the stream header at ``buf[pos:]``. Returns (params, offset after the header).

    Raises:
        FormatError: not a nacrith stream, unsupported version, bad field.
        TruncatedError: the header is cut short.
    """
    if len(buf) - pos < len(MAGIC) and bytes(buf[pos:]) == MAGIC[:len(buf) - pos]:
        raise TruncatedError("truncated stream: incomplete magic number")
    if bytes(buf[pos:pos + 8]) != MAGIC:
        raise FormatError("not a nacrith stream (bad magic number)")
    pos += 8
    _need(buf, pos, 6, "header")
    version, flags, hlen = struct.unpack_from("<BBI", buf, pos)
    pos += 6
    if version != VERSION:
        raise FormatError(f"unsupported format version {version} (this nacrith reads {VERSION})")
    if flags != 0:
        raise FormatError(f"reserved header flags set (0x{flags:02x})")
    if hlen > MAX_HEADER:
        raise FormatError(f"header length {hlen} exceeds {MAX_HEADER}")
    _need(buf, pos, hlen, "header parameters")
    end = pos + hlen
    vals: dict[int, bytes] = {}
    while pos < end:
        if end - pos < 3:
            raise FormatError("malformed header parameter")
        k, n = struct.unpack_from("<BH", buf, pos)
        pos += 3
        if pos + n > end:
            raise FormatError(f"header parameter 0x{k:02x} overruns the header")
        if k in vals:
            raise FormatError(f"duplicate header parameter 0x{k:02x}")
        vals[k] = bytes(buf[pos:pos + n])
        pos += n
    known = {K_MODEL_SHA256: 32, K_VOCAB: 8, K_WINDOW: 12, K_FRAME_SIZE: 4, K_BACKEND: None}
    for k in vals:
        if k < 0x80 and k not in known:
            raise FormatError(f"unsupported critical header parameter 0x{k:02x} (newer writer?)")
    for k, size in known.items():
        if k not in vals:
            raise FormatError(f"missing header parameter 0x{k:02x}")
        if size is not None and len(vals[k]) != size:
            raise FormatError(f"header parameter 0x{k:02x} has {len(vals[k])} bytes, expected {size}")
    n_vocab, bos = struct.unpack("<II", vals[K_VOCAB])
    size, sink, slide = struct.unpack("<III", vals[K_WINDOW])
    (frame_size,) = struct.unpack("<I", vals[K_FRAME_SIZE])
    if not 1 <= frame_size <= MAX_FRAME_SIZE:
        raise FormatError(f"frame size {frame_size} out of range")
    if not (0 < n_vocab < (1 << 22) and bos < n_vocab):
        raise FormatError(f"bad vocabulary parameters ({n_vocab}, {bos})")
    try:
        window = Window(size, sink, slide)
    except ValueError as e:
        raise FormatError(str(e)) from None
    try:
        backend = vals[K_BACKEND].decode()
        name = vals.get(K_MODEL_NAME, b"").decode("utf-8", "replace")
        writer = vals.get(K_WRITER, b"").decode("utf-8", "replace")
    except UnicodeDecodeError:
        raise FormatError("backend fingerprint is not UTF-8") from None
    return StreamParams(vals[K_MODEL_SHA256], backend, n_vocab, bos, window, frame_size, name, writer), pos


@dataclass
class FrameHeader:
    """One frame: ``kind`` (FRAME_*), ``raw_size`` original bytes, ``payload`` (memoryview),
    ``checksum`` (8 bytes), ``offset`` (of the frame in the stream)."""

    kind: int
    raw_size: int
    payload: memoryview
    checksum: bytes
    offset: int


def write_frame(kind: int, raw: bytes, payload: bytes) -> bytes:
    return FRAME_HEADER.pack(kind, len(raw), len(payload), frame_checksum(raw)) + payload


def write_end(total_size: int, total_digest: bytes) -> bytes:
    return END_FRAME.pack(FRAME_END, total_size, total_digest)


def read_frame(buf, pos: int, frame_size: int):
    """Parse the frame at ``buf[pos:]``.

    Returns:
        (FrameHeader, next offset) for a data frame, or ((total_size, digest16), end offset) for
        the end frame (``kind`` FRAME_END).
    """
    _need(buf, pos, 1, "frame type")
    kind = buf[pos]
    if kind == FRAME_END:
        _need(buf, pos, END_FRAME.size, "end frame")
        _, total, digest = END_FRAME.unpack_from(buf, pos)
        return (total, digest), pos + END_FRAME.size
    if kind not in FRAME_NAMES:
        raise FormatError(f"unknown frame type {kind} at offset {pos}")
    _need(buf, pos, FRAME_HEADER.size, "frame header")
    _, raw_size, psize, checksum = FRAME_HEADER.unpack_from(buf, pos)
    if raw_size > frame_size or raw_size == 0:
        raise FormatError(f"frame at offset {pos} declares {raw_size} bytes (frame size is {frame_size})")
    start = pos + FRAME_HEADER.size
    _need(buf, start, psize, f"frame payload at offset {pos}")
    if kind == FRAME_STORED and psize != raw_size:
        raise FormatError(f"stored frame at offset {pos}: payload {psize} != size {raw_size}")
    return FrameHeader(kind, raw_size, memoryview(buf)[start:start + psize], checksum, pos), start + psize


def write_llm_payload(lane_tokens: list[int], streams: list[bytes]) -> bytes:
    head = struct.pack("<H", len(streams)) + b"".join(
        LANE_ENTRY.pack(n, len(s)) for n, s in zip(lane_tokens, streams))
    return head + b"".join(streams)


def read_llm_payload(payload: memoryview, raw_size: int, offset: int) -> tuple[list[int], list[memoryview]]:
    """Split an LLM frame payload into (tokens per lane, coded stream per lane)."""
    if len(payload) < 2:
        raise FormatError(f"llm frame at offset {offset}: payload too short")
    (n_lanes,) = struct.unpack_from("<H", payload, 0)
    if not 1 <= n_lanes <= MAX_LANES:
        raise FormatError(f"llm frame at offset {offset}: {n_lanes} lanes")
    pos = 2
    if len(payload) < pos + n_lanes * LANE_ENTRY.size:
        raise FormatError(f"llm frame at offset {offset}: lane table truncated")
    counts, sizes = [], []
    for _ in range(n_lanes):
        n, s = LANE_ENTRY.unpack_from(payload, pos)
        pos += LANE_ENTRY.size
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
