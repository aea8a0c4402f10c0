"""Fuzz target of the text path: segmenter (``nacrith.segment.cut``), llama.cpp's tokenizer
(through ``Model.tokenize``) and escapes (``split_text``), in process, so that an abort in C++
(llama.cpp threw ``std::invalid_argument`` on code points above U+10FFFF and killed the process)
kills the run that found it.

``check(model, data)`` runs ``data`` through the encoder's text path exactly as a frame does and
asserts that the tokens and escaped bytes give ``data`` back. ``patterns(n)`` are the byte
patterns of length n placed inside text: every 1- and 2-byte pattern, and for 3 and 4 bytes every
lead byte from 0x80 with the following bytes drawn from ``CLASS_EDGES`` (the first and last byte
of every UTF-8 byte class: ASCII, the continuation ranges 80-8F, 90-9F, A0-BF, the invalid leads
C0-C1, F5-FF, and each lead range), so every class sequence of length <= 4 is covered.
``campaign(seconds)`` runs random mixes of text and bytes (the longer campaign: ``python -m
tests.fuzz.text_path SECONDS``).
"""

from __future__ import annotations

import itertools
import random
import sys
import time

import numpy as np

CLASS_EDGES = bytes(sorted({0x00, 0x0A, 0x20, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2,
                            0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xF7,
                            0xF8, 0xFF}))


def patterns(n: int):
    """The byte patterns of length ``n`` (module docstring)."""
    if n <= 2:
        yield from (bytes(p) for p in itertools.product(range(256), repeat=n))
        return
    for lead in range(0x80, 0x100):
        for rest in itertools.product(CLASS_EDGES, repeat=n - 1):
            yield bytes((lead, *rest))


def embed(pats, per: int = 4096):
    """Buffers of text with ``per`` patterns each, every pattern between two words."""
    buf, k = [], 0
    for p in pats:
        buf.append(b"word " + p + b" text")
        k += 1
        if k == per:
            yield b"\n".join(buf)
            buf, k = [], 0
    if buf:
        yield b"\n".join(buf)


def check(model, data: bytes) -> int:
    """Run ``data`` through the encoder's text path (``cut`` into frames, ``split_text`` of each
    text frame) and assert it reproduces ``data``. Returns the number of text frames."""
    from nacrith.segment import cut, split_text

    frames, carry = cut(data, model.missing_bytes, model.tokenize, 1 << 20, True)
    assert not carry
    assert b"".join(f for f, _ in frames) == data
    texts = 0
    tb = model.token_bytes
    for piece, text in frames:
        if not text:
            continue
        texts += 1
        split = split_text(model, piece)
        assert split is not None, f"a text frame did not tokenize: {piece[:40]!r}"
        got = b"".join(split.escapes.get(i, b"") + tb[int(t)] for i, t in enumerate(split.tokens)) + split.tail
        assert got == piece, f"text path does not reproduce {piece[:40]!r}"
        assert not split.tail, "a text frame must not end with escaped bytes"
    # the whole buffer as one text frame too (split_text on bytes the segmenter would not give it)
    split = split_text(model, data)
    if split is not None:
        got = b"".join(split.escapes.get(i, b"") + tb[int(t)] for i, t in enumerate(split.tokens)) + split.tail
        assert got == data
    return texts


def random_mix(rng: random.Random, text: bytes) -> bytes:
    """Text with random bytes, UTF-8-shaped sequences and cut characters spliced in."""
    parts = []
    for _ in range(rng.randint(1, 12)):
        a = rng.randrange(len(text))
        parts.append(text[a:a + rng.randint(0, 600)])
        kind = rng.random()
        if kind < 0.3:
            parts.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))))
        elif kind < 0.6:  # a 4-byte UTF-8 shape, valid or above U+10FFFF
            parts.append(bytes([rng.choice([0xF0, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7])]
                               + [rng.randrange(0x80, 0xC0) for _ in range(3)]))
        elif kind < 0.8:  # a valid character cut short, or a surrogate
            ch = rng.choice(["é", "€", "😀", "中"]).encode()
            parts.append(ch[:rng.randint(1, len(ch))] if rng.random() < 0.5 else b"\xed\xa0\x80")
        else:
            parts.append(bytes(rng.randrange(256) for _ in range(rng.randint(0, 1500))))
    return b"".join(parts)


def campaign(model, seconds: float, seed: int = 0, text: bytes | None = None) -> dict:
    """Random mixes for ``seconds``; returns counts (inputs, bytes, text frames)."""
    rng = random.Random(seed)
    text = text or (b"The quick brown fox jumps over the lazy dog. " * 40)
    n = total = frames = 0
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        data = random_mix(rng, text)
        frames += check(model, data)
        n += 1
        total += len(data)
    return {"inputs": n, "bytes": total, "text_frames": frames, "seed": seed, "seconds": seconds}


def main(argv: list[str]) -> int:
    from nacrith.model import Model

    seconds = float(argv[0]) if argv else 60.0
    model = Model(argv[1] if len(argv) > 1 else None)
    started = time.time()
    n = 0
    for length in (1, 2, 3, 4):
        for data in embed(patterns(length)):
            check(model, data)
            n += data.count(b"word ")
    res = campaign(model, seconds)
    res["patterns"] = n
    res["model"] = model.path.name
    res["wall_s"] = round(time.time() - started, 1)
    print(res)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main(sys.argv[1:]))
