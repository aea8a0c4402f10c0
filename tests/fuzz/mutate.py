"""Mutations of valid nacrith streams, shared by the hypothesis fuzzer, the atheris harness and
the campaign script: bit flips, byte edits, truncations, extensions, splices, header field edits."""

from __future__ import annotations

import random

from nacrith.format import FRAME_LLM, MAGIC, build_stream


def llm_stream(data: bytes, session, options) -> bytes:
    """A valid stream whose single data frame is an LLM frame, even where stored or zstd would
    be smaller (short inputs), so that fuzzing reaches the LLM decoder. Raises ValueError when
    ``data`` cannot take the LLM path."""
    from nacrith.llm_frame import encode_llm_frame

    payload = encode_llm_frame(session, data, options)
    if payload is None:
        raise ValueError("input does not take the LLM path")
    return build_stream([(FRAME_LLM, data, payload)], options.frame_size, session.params(options))


def mutate(blob: bytes, rng: random.Random, other: bytes | None = None) -> tuple[str, bytes]:
    """One random mutation of ``blob``; returns (kind, mutated bytes)."""
    kind = rng.choice(["bitflip", "bitflips", "byte", "truncate", "extend", "splice", "header",
                       "zero_run", "duplicate"])
    b = bytearray(blob)
    n = len(b)
    if kind == "bitflip":
        i = rng.randrange(n)
        b[i] ^= 1 << rng.randrange(8)
    elif kind == "bitflips":
        for _ in range(rng.randint(2, 8)):
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "byte":
        b[rng.randrange(n)] = rng.randrange(256)
    elif kind == "truncate":
        b = b[:rng.randrange(n)]
    elif kind == "extend":
        b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == "splice":
        src = other or blob
        i, j = rng.randrange(n), rng.randrange(len(src))
        b = b[:i] + src[j:j + rng.randint(1, 256)]
    elif kind == "header":
        # edit a field near the start: version, flags, frame size, first frame's type / sizes
        i = rng.randrange(len(MAGIC), min(n, len(MAGIC) + 24))
        b[i] = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 0x7F, 0x80, 0xFF, b[i] ^ 0xFF])
    elif kind == "zero_run":
        i = rng.randrange(n)
        for k in range(i, min(n, i + rng.randint(1, 32))):
            b[k] = 0
    else:
        i = rng.randrange(n)
        b = b[:i] + b[i:i + rng.randint(1, 64)] + b[i:]
    return kind, bytes(b)
