"""Regenerate the conformance vectors in codec/vectors/ (run after a format change only).

    .venv/bin/python codec/make_vectors.py

valid/NAME.nc decodes to valid/NAME; invalid/NAME.nc must be rejected with the error class named
in invalid/README.md. The LLM vectors need the default model and the pinned CPU build.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from nacrith.codec import Options, Session, compress  # noqa: E402
from nacrith.container import (FRAME_LLM, FRAME_STORED, MAGIC, StreamHeader, total_hasher,  # noqa: E402
                               varint, write_end, write_frame)
from nacrith.lanes import Window  # noqa: E402

CORPORA = HERE.parent.parent / "shared" / "corpora"


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

    good = blobs["llm-alice.txt"]
    hdr = StreamHeader(1 << 20).encode()
    h = total_hasher()
    h.update(b"abc")
    stored = hdr + write_frame(FRAME_STORED, b"abc", b"abc") + write_end(3, h.digest())
    bad = {
        "bad-magic": b"\x89NCX" + good[4:],
        "truncated-magic": MAGIC[:5],
        "truncated-header": good[:9],
        "truncated-payload": good[:-20],
        "truncated-end": good[:-3],
        "bad-version": good[:8] + b"\x09" + good[9:],
        "reserved-flags": good[:9] + b"\x80" + good[10:],
        "trailing-data": good + b"\x00",
        "unknown-frame-type": hdr + b"\x07" + stored[len(hdr) + 1:],
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
