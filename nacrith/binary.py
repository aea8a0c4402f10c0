"""Binary frame codecs: ``stored``, ``zstd`` (level 19), ``lzma2`` (raw LZMA2 at xz -9e strength,
filter and literal settings searched per frame: ``nacrith.lzma2``) and, decode only, ``lzma``
(.xz payloads, written by earlier encoders). ``codec/FORMAT.md``, "Frame types".
"""

from __future__ import annotations

import lzma

import zstandard

from . import lzma2
from .format import FRAME_LZMA, FRAME_LZMA2, FRAME_STORED, FRAME_ZSTD, Frame
from .errors import FormatError

ZSTD_LEVEL = 19


class BinaryCoder:
    """Encodes one frame's bytes every way a binary frame can hold them (a zstd context reused
    across frames)."""

    def __init__(self):
        self._zc = zstandard.ZstdCompressor(level=ZSTD_LEVEL)

    def candidates(self, raw: bytes) -> list[tuple[int, int, bytes]]:
        """(payload size, frame type, payload) of stored, zstd and every lzma2 setting tried."""
        z = self._zc.compress(raw)
        cands = [(len(raw), FRAME_STORED, raw), (len(z), FRAME_ZSTD, z)]
        return cands + [(len(x), FRAME_LZMA2, x) for x in lzma2.candidates(raw)]


def decode(fr: Frame) -> bytes:
    """Original bytes of a binary frame (unchecked: the caller verifies the checksum).

    Raises FormatError (corrupt payload, or one that would exceed ``fr.raw_size``)."""
    if fr.kind == FRAME_STORED:
        return bytes(fr.payload)
    if fr.kind == FRAME_ZSTD:
        return _zstd_decompress(fr)
    if fr.kind == FRAME_LZMA:
        return _lzma_decompress(fr)
    if fr.kind == FRAME_LZMA2:
        return lzma2.decode(bytes(fr.payload), fr.raw_size, f"frame at offset {fr.offset}")
    raise ValueError(f"frame type {fr.kind} is not a binary frame")


def zstd_reference_size(data: bytes) -> int:
    """Size of ``zstd -19 --long`` of ``data`` (a bound the guard is measured against)."""
    params = zstandard.ZstdCompressionParameters.from_level(19, enable_ldm=True, window_log=27)
    return len(zstandard.ZstdCompressor(compression_params=params).compress(data))


def _zstd_decompress(fr: Frame) -> bytes:
    payload = bytes(fr.payload)
    try:
        # the zstd frame header may declare a content size, which zstandard would allocate
        # before decoding: it must be the frame's raw size (or absent)
        declared = zstandard.frame_content_size(payload)
        if declared not in (-1, fr.raw_size):
            raise FormatError(f"frame at offset {fr.offset}: zstd payload declares {declared} bytes, "
                              f"the frame {fr.raw_size}")
        if declared == fr.raw_size:
            return zstandard.ZstdDecompressor().decompress(payload, max_output_size=fr.raw_size)
        # no declared size: decompress in pieces, so that memory follows what the payload really
        # holds (max_output_size would allocate RawSize up front: a 30 KB stream declaring a
        # 1 GiB frame cost 1.1 GB)
        out = bytearray()
        with zstandard.ZstdDecompressor().stream_reader(payload, read_across_frames=False) as r:
            while chunk := r.read(1 << 20):
                out += chunk
                if len(out) > fr.raw_size:
                    raise FormatError(f"frame at offset {fr.offset}: zstd payload holds more than "
                                      f"the frame's {fr.raw_size} bytes")
        return bytes(out)
    except zstandard.ZstdError as e:
        raise FormatError(f"frame at offset {fr.offset}: corrupt zstd payload ({e})") from None


def _lzma_decompress(fr: Frame) -> bytes:
    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        raw = d.decompress(bytes(fr.payload), max_length=fr.raw_size + 1)
    except lzma.LZMAError as e:
        raise FormatError(f"frame at offset {fr.offset}: corrupt lzma payload ({e})") from None
    if not d.eof or d.unused_data:
        raise FormatError(f"frame at offset {fr.offset}: lzma payload does not end where it should")
    return raw
