"""Regenerate the conformance vectors in codec/vectors/ (run after a format change only).

    .venv/bin/python codec/make_vectors.py

valid/NAME.nc decodes to valid/NAME; invalid/NAME.nc must be rejected (each named for what it
breaks). The LLM vectors need the default model and the pinned CPU build.

Vectors already committed are streams of earlier encoders that must keep decoding; when a
regeneration changes one only because today's encoder writes it differently (not because the
format changed), keep the committed file (``git checkout`` it) so the old stream stays tested.
"""

from __future__ import annotations

import lzma
import math
import random
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from nacrith import lzma2  # noqa: E402
from nacrith.session import Options, Session  # noqa: E402
from nacrith.policy import compress  # noqa: E402
from nacrith.container import (FRAME_LLM, FRAME_LZMA, FRAME_LZMA2, FRAME_STORED, MAGIC,  # noqa: E402
                               StreamHeader, total_hasher, varint, write_end, write_frame)
from nacrith.params import Window  # noqa: E402

CORPORA = HERE.parent.parent / "shared" / "corpora"


def one_frame(kind: int, raw: bytes, payload: bytes) -> bytes:
    """A stream of one data frame of ``kind`` with the given payload."""
    h = total_hasher()
    h.update(raw)
    return StreamHeader(1 << 20).encode() + write_frame(kind, raw, payload) + write_end(len(raw), h.digest())


def x86_calls(n: int) -> bytes:
    """Synthetic x86 code: ``call rel32`` to a few targets between filler bytes (what the x86
    branch-call-jump filter turns into repeats)."""
    rng, out = random.Random(3), bytearray()
    for _ in range(n):
        out += bytes(rng.randrange(0x40, 0x48) for _ in range(rng.randrange(1, 4)))
        out += b"\xe8" + struct.pack("<i", rng.choice((0x400, 0x1234, 0x8000)) - (len(out) + 4))
    return bytes(out)


def crafted() -> dict[str, tuple[bytes, bytes]]:
    """Originals and streams of frames the default encoder does not write by itself: a .xz frame
    (type 5, written by earlier encoders) and Lzma2 frames with each kind of filter."""
    wave = b"".join(struct.pack("<h", int(9000 * math.sin(i / 7))) for i in range(3000))
    calls = x86_calls(400)
    text = b"lzma2 with lc=0 lp=2 pb=2 and no filter. " * 30
    return {
        "xz-frame.bin": (text, one_frame(FRAME_LZMA, text, lzma.compress(text, check=lzma.CHECK_NONE))),
        "lzma2-delta2.bin": (wave, one_frame(FRAME_LZMA2, wave, lzma2.encode(wave, lzma2.FILTER_DELTA, 2))),
        "lzma2-x86.bin": (calls, one_frame(FRAME_LZMA2, calls, lzma2.encode(calls, 2))),
        "lzma2-literals.bin": (text, one_frame(FRAME_LZMA2, text, lzma2.encode(text, 0, 0, (0, 2, 2)))),
    }


def main() -> None:
    valid, invalid = HERE / "vectors" / "valid", HERE / "vectors" / "invalid"
    s = Session()
    alice = (CORPORA / "canterbury" / "alice29.txt").read_bytes()
    originals = {
        "empty": (b"", Options()),
        "stored-random.bin": (random.Random(7).randbytes(300), Options()),
        "zstd-bytes.bin": (bytes(range(256)) * 2, Options()),
        "zstd-repeats.txt": (b"abcabcabc, zstd wins on this line. " * 40, Options()),
        "llm-alice.txt": (alice[1000:1600], Options()),
        "llm-lanes-slide.txt": (alice[20000:20900], Options(window=Window(40, 4, 12), max_lanes=3,
                                                               min_lane_tokens=40)),
        "mixed-frames.bin": (alice[3000:3300] + bytes(range(200, 256)) + b"\x00" * 300 + alice[4000:4200],
                             Options(frame_size=256)),
    }
    blobs = {}
    for name, (data, opts) in originals.items():
        (valid / name).write_bytes(data)
        blobs[name] = compress(data, s, opts)
        (valid / f"{name}.nc").write_bytes(blobs[name])
        print(f"valid/{name}.nc: {len(data)} -> {len(blobs[name])} bytes")

    extra = crafted()
    for name, (data, blob) in extra.items():
        (valid / name).write_bytes(data)
        (valid / f"{name}.nc").write_bytes(blob)
        print(f"valid/{name}.nc: {len(data)} -> {len(blob)} bytes")

    good = blobs["llm-alice.txt"]
    wave = extra["lzma2-delta2.bin"][0]
    lz = lzma2.encode(wave, lzma2.FILTER_DELTA, 2)
    hdr = StreamHeader(1 << 20).encode()
    stored = one_frame(FRAME_STORED, b"abc", b"abc")
    bad = {
        "bad-magic": b"\x89NCX" + good[4:],
        "truncated-magic": MAGIC[:5],
        "truncated-header": good[:9],
        "truncated-payload": good[:-20],
        "truncated-end": good[:-3],
        "bad-version": good[:8] + b"\x09" + good[9:],
        "reserved-flags": good[:9] + b"\x80" + good[10:],
        "trailing-data": good + b"\x00",
        "unknown-frame-type": hdr + b"\x08" + stored[len(hdr) + 1:],
        "lzma2-unknown-filter": one_frame(FRAME_LZMA2, wave, b"\x09" + lz[1:]),
        "lzma2-dict-prop": one_frame(FRAME_LZMA2, wave, lz[:2] + b"\x29" + lz[3:]),
        "lzma2-after-end": one_frame(FRAME_LZMA2, wave, lz + b"\x00"),
        "lzma2-truncated": one_frame(FRAME_LZMA2, wave, lz[:-1]),
        "lzma2-wrong-filter": one_frame(FRAME_LZMA2, wave, b"\x00" + lz[2:]),
        "frame-exceeds-frame-size": StreamHeader(2).encode() + stored[len(hdr):],
        "llm-without-params": hdr + bytes([FRAME_LLM]) + stored[len(hdr) + 1:],
        "stored-size-mismatch": hdr + b"\x01" + varint(3) + varint(2) + stored[len(hdr) + 3:],
        "frame-checksum": stored[:len(hdr) + 3] + bytes([stored[len(hdr) + 3] ^ 1]) + stored[len(hdr) + 4:],
        "total-checksum": stored[:-1] + bytes([stored[-1] ^ 1]),
        "llm-payload-bitflip": good[:-10] + bytes([good[-10] ^ 4]) + good[-9:],
        "noncanonical-varint": MAGIC + b"\x01\x00" + b"\x80\x80\xc0\x00",
    }
    for name, blob in bad.items():
        (invalid / f"{name}.nc").write_bytes(blob)
    print(f"{len(bad)} invalid vectors")


if __name__ == "__main__":
    main()
