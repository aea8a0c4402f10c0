"""Frames of the stream (``codec/FORMAT.md``, "Data frames", "Seek table", "End frame", "LLM
frame payload"): their records, writers and readers, and the LLM payload's lane table. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FormatError
from .header import LLMParams
from .wire import (DATA_FRAMES, END_FRAME, END_FRAME_V2, END_MAGIC, FRAME_END, FRAME_SEEK, FRAME_STORED, MAX_LANES,
                   MAX_SEEK_ENTRIES, VERSION, _need, frame_checksum, read_varint, varint)

@dataclass
class Frame:
    """One data frame: ``kind`` (FRAME_*), ``raw_size`` original bytes, ``payload`` (memoryview),
    ``checksum`` (8 bytes), ``offset`` (of the frame in the stream), ``params`` (the LLMParams in
    force, or None), ``version`` (of the stream: the LLM payload's lane table depends on it)."""

    kind: int
    raw_size: int
    payload: memoryview
    checksum: bytes
    offset: int
    params: LLMParams | None = None
    version: int = VERSION


@dataclass
class EndFrame:
    """The end frame: total original size, BLAKE2b-64 of all original bytes, offset of the seek
    table (0: none). Version 1: fixed 29 bytes; version 2: one byte (at most one data frame; the
    parser fills in the size and the frame's checksum) or 21 bytes with a seek table."""

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


@dataclass
class SeekTable:
    """The seek table frame: one ``SeekEntry`` per data frame, and its own stream offset."""

    entries: list
    offset: int


def write_frame(kind: int, raw: bytes, payload: bytes) -> bytes:
    return bytes([kind]) + varint(len(raw)) + varint(len(payload)) + frame_checksum(raw) + payload


def write_end(checksum: bytes | None = None, seek_offset: int = 0) -> bytes:
    """Version 2 end frame: one byte, or with a seek table (``seek_offset``, required when there
    are two data frames or more) the whole-stream ``checksum``, the offset and the end magic."""
    if not seek_offset:
        return bytes([FRAME_END])
    return END_FRAME_V2.pack(FRAME_END, checksum, seek_offset, END_MAGIC)


def write_end_v1(total_size: int, total_digest: bytes, seek_offset: int = 0) -> bytes:
    """Version 1 end frame (fixed 29 bytes)."""
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


def read_end(buf, pos: int, version: int = 1) -> tuple[EndFrame, int]:
    """The fixed-size end frame at ``buf[pos:]``: version 1, or version 2 with a seek table
    (its total size is then 0: the seek table has the frame sizes)."""
    if version == 1:
        _need(buf, pos, END_FRAME.size, "end frame")
        _, total, digest, seek, magic = END_FRAME.unpack_from(buf, pos)
        size = END_FRAME.size
    else:
        _need(buf, pos, END_FRAME_V2.size, "end frame")
        (_, digest, seek, magic), total, size = END_FRAME_V2.unpack_from(buf, pos), 0, END_FRAME_V2.size
        if seek == 0:
            raise FormatError(f"bad end frame at offset {pos}: no seek table offset")
    if magic != END_MAGIC:
        raise FormatError(f"bad end frame at offset {pos}")
    return EndFrame(total, digest, pos, seek), pos + size


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


def write_llm_payload(lane_tokens: list[int], streams: list[bytes], version: int = VERSION) -> bytes:
    """Lane count, lane table, lane streams. Version 2 leaves out the last lane's stream size
    (the rest of the payload)."""
    sizes = [varint(len(s)) for s in streams]
    if version == 2:
        sizes[-1] = b""
    head = varint(len(streams)) + b"".join(varint(n) + s for n, s in zip(lane_tokens, sizes))
    return head + b"".join(streams)


def read_llm_payload(payload: memoryview, raw_size: int, offset: int,
                     version: int = VERSION) -> tuple[list[int], list[memoryview]]:
    """Split an LLM frame payload into (tokens per lane, coded stream per lane)."""
    n_lanes, pos = read_varint(payload, 0, "lane count")
    if not 1 <= n_lanes <= MAX_LANES:
        raise FormatError(f"llm frame at offset {offset}: {n_lanes} lanes (at most {MAX_LANES}): corrupt")
    counts, sizes = [], []
    for i in range(n_lanes):
        n, pos = read_varint(payload, pos, "lane tokens")
        counts.append(n)
        if version == 1 or i < n_lanes - 1:
            s, pos = read_varint(payload, pos, "lane stream size")
            sizes.append(s)
    if sum(counts) > raw_size:
        raise FormatError(f"llm frame at offset {offset}: {sum(counts)} tokens for {raw_size} bytes")
    if version == 2:
        if pos + sum(sizes) > len(payload):
            raise FormatError(f"llm frame at offset {offset}: lane streams overrun the payload")
        sizes.append(len(payload) - pos - sum(sizes))
    if pos + sum(sizes) != len(payload):
        raise FormatError(f"llm frame at offset {offset}: lane streams do not fill the payload")
    streams = []
    for s in sizes:
        streams.append(payload[pos:pos + s])
        pos += s
    return counts, streams
