"""Wire primitives of the nacrith stream format (``codec/FORMAT.md`` is normative): constants
and caps, frame types, varints, the BLAKE2b checks and checksums. Pure: no numpy, llama.cpp or
native import."""

from __future__ import annotations

import hashlib
import struct

from ..errors import FormatError, TruncatedError

MAGIC = b"\x89NCR\r\n\x1a\n"
VERSION = 2  # written
VERSIONS = (1, 2)  # read
CHECK_SIZE = 4  # BLAKE2b-32 header / params frame check (version 2)
DESC_PARAMS = 0x20  # version 2 descriptor: the params block follows
MAX_PARAMS = 1 << 16  # bytes of a parameter block
MAX_FRAME_SIZE = 1 << 30  # original bytes per frame
MAX_LANES = 256  # llama.cpp's LLAMA_MAX_SEQ: sequences one context holds

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
END_FRAME = struct.Struct("<BQ8sQ4s")  # version 1: type 0, total size, checksum, seek table offset, magic
END_FRAME_V2 = struct.Struct("<B8sQ4s")  # version 2 with a seek table: type 0, checksum, seek offset, magic
MAX_SEEK_ENTRIES = 1 << 24

# parameter keys; < 0x80 are critical (a decoder must understand them), >= 0x80 informational
K_MODEL_ID = 0x01
K_BACKEND = 0x02
K_VOCAB = 0x03
K_WINDOW = 0x04
K_ENSEMBLE = 0x05
K_MODEL_NAME = 0x80
K_WRITER = 0x81
# version 2 params block entries (critical keys < 0x80 share the numbering space of version 1's
# params frame, but live in another structure)
K_SCHEDULE = 0x01  # the LLM evaluation schedule: 1 = lockstep (codec/FORMAT.md, "Evaluation schedule")
SCHEDULE_BATCHED = 0  # not written: batch-invariant backend, any batching on either side
SCHEDULE_LOCKSTEP = 1  # both sides: one token per lane per llama_decode, no drafts
SCHEDULE_NAMES = {SCHEDULE_BATCHED: "batched", SCHEDULE_LOCKSTEP: "lockstep"}


def frame_checksum(data: bytes) -> bytes:
    """8-byte BLAKE2b (digest_size=8, no key) of a frame's original bytes."""
    return hashlib.blake2b(data, digest_size=8).digest()


def check(data) -> bytes:
    """4-byte BLAKE2b (digest_size=4, no key): the version 2 header and params frame check."""
    return hashlib.blake2b(data, digest_size=CHECK_SIZE).digest()


def backend_id(fingerprint: str) -> bytes:
    """BLAKE2b-64 of a backend fingerprint string (what streams store)."""
    return hashlib.blake2b(fingerprint.encode(), digest_size=8).digest()


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


def _need(buf, pos: int, n: int, what: str) -> None:
    if pos + n > len(buf):
        raise TruncatedError(f"truncated stream: {what} needs {n} bytes at offset {pos}, "
                             f"{max(0, len(buf) - pos)} left")
