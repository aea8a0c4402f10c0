"""Any bytes: split input into text runs (coded by the LLM ensemble) and binary runs (coded by
zstd / lzma / stored), and text into tokens plus escaped raw bytes.

* ``split_text``: tokens of a text run where every untokenisable byte (invalid UTF-8, or a byte
  the vocabulary has no token for: 21 of them in SmolLM2) is kept as an *escape* attached to the
  next token, so the LLM context continues across it (``codec/FORMAT.md``, "Escapes").
* ``plan``: cut points between text and binary runs, decided per block by estimated cost: the
  LLM's (``BITS_PER_TOKEN`` per token of the block plus ``ESCAPE_BITS`` per untokenisable byte)
  against zstd's (measured). Binary data tokenizes into many short tokens, text into few long
  ones, so UTF-8 text in any script is text and a bitmap full of tokenizable bytes is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import zstandard

BLOCK = 2048  # bytes per classification block
MIN_TEXT_RUN = 512  # shorter text runs between binary runs are not worth an LLM frame
MIN_BINARY_RUN = 256  # shorter binary runs inside text become escapes
ESCAPE_BITS = 40.0  # estimated cost of one escaped byte (escape symbol + length + byte)
BITS_PER_TOKEN = 2.5  # LLM cost per token assumed by the estimate (measured 4.1 on alice29: the
# estimate leans towards trying the LLM; every frame still keeps the smallest of its candidates)
TEXT_BYTES_PER_TOKEN = 1.8  # a block whose tokens are this long on average is text whatever zstd
# makes of it: repetitive text (logs: 2.0 bytes/token, zstd-3 under the 2.5 bits/token estimate)
# costs the LLM with its match model far less than 2.5 bits/token (Apache_2k.log: 0.55), while
# binary data tokenizes into about one byte per token (kennedy.xls 1.03, ptt5 1.00, sum 1.20)

# valid UTF-8 characters (RFC 3629), one at a time
_UTF8 = re.compile(rb"[\x00-\x7f]|[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]"
                   rb"|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]"
                   rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}")


def bad_mask(data: bytes, missing: frozenset) -> np.ndarray:
    """bool array (len(data),): True for bytes the tokenizer cannot reproduce: bytes outside
    valid UTF-8 characters, and characters containing a byte in ``missing`` (bytes with no
    single-byte token)."""
    ok = np.zeros(len(data), dtype=bool)
    miss = np.zeros(256, dtype=bool)
    miss[list(missing)] = True
    arr = np.frombuffer(data, dtype=np.uint8)
    ascii_ok = (arr < 0x80) & ~miss[arr]
    if ascii_ok.all():
        return ~ascii_ok
    ok |= ascii_ok
    for m in _UTF8.finditer(data):
        a, b = m.span()
        if b - a > 1 and not miss[arr[a:b]].any():
            ok[a:b] = True
    return ~ok


@dataclass
class TextSplit:
    """tokens: int32 (n,); escapes: {token index: raw bytes coded just before that token};
    tail: raw bytes after the last token (non-empty only when the run ends with bad bytes)."""

    tokens: np.ndarray
    escapes: dict
    tail: bytes


def split_text(model, raw: bytes) -> TextSplit | None:
    """Tokens and escapes that reproduce ``raw`` exactly, or None if some clean stretch does not
    round-trip through the tokenizer (then the run is not text)."""
    try:
        toks = model.tokenize(raw)  # refuses invalid UTF-8 (llama.cpp's tokenizer could abort)
    except ValueError:
        toks = None
    if toks is not None and model.detokenize(toks) == raw:
        return TextSplit(toks, {}, b"")
    bad = bad_mask(raw, model.missing_bytes)
    edges = np.flatnonzero(np.diff(bad.astype(np.int8))) + 1
    bounds = [0, *edges.tolist(), len(raw)]
    out: list[np.ndarray] = []
    escapes: dict = {}
    pending = b""
    n = 0
    for a, b in zip(bounds[:-1], bounds[1:]):
        piece = raw[a:b]
        if bad[a]:
            pending += piece
            continue
        try:
            t = model.tokenize(piece)
        except ValueError:  # not reached: bad_mask leaves only valid UTF-8 characters
            return None
        if model.detokenize(t) != piece:
            return None
        if len(t) == 0:
            pending += piece
            continue
        if pending:
            escapes[n] = pending
            pending = b""
        out.append(t)
        n += len(t)
    tokens = np.concatenate(out).astype(np.int32) if out else np.zeros(0, np.int32)
    return TextSplit(tokens, escapes, pending)


def plan(data: bytes, missing: frozenset, tokenize) -> list[tuple[int, int, bool]]:
    """Runs (start, end, is_text) covering ``data``.

    Each block of ``BLOCK`` bytes is text when its estimated LLM cost (``BITS_PER_TOKEN`` per
    token of its tokenizable bytes, ``ESCAPE_BITS`` per untokenisable byte) is below its zstd
    size in bits, or when it is all tokenizable with at least ``TEXT_BYTES_PER_TOKEN`` bytes per
    token; then short binary runs inside text become escapes and short text runs between
    binary become binary. ``tokenize(bytes) -> sequence`` is the model's tokenizer.
    """
    if not data:
        return []
    bad = bad_mask(data, missing)
    zc = zstandard.ZstdCompressor(level=3)
    arr = np.frombuffer(data, dtype=np.uint8)
    kinds = []
    for a in range(0, len(data), BLOCK):
        b = min(len(data), a + BLOCK)
        blk_bad = bad[a:b]
        n_bad = int(blk_bad.sum())
        zbits = 8.0 * len(zc.compress(data[a:b]))
        if ESCAPE_BITS * n_bad >= zbits:
            kinds.append(False)
            continue
        good = arr[a:b][~blk_bad].tobytes() if n_bad else data[a:b]
        try:
            n_tok = len(tokenize(good))
        except ValueError:  # not reached: the characters bad_mask keeps are valid UTF-8
            kinds.append(False)
            continue
        kinds.append(BITS_PER_TOKEN * n_tok + ESCAPE_BITS * n_bad < zbits
                     or (n_bad == 0 and len(good) >= TEXT_BYTES_PER_TOKEN * n_tok))
    runs = _runs(kinds, len(data))
    runs = _absorb(runs, False, MIN_BINARY_RUN)  # short binary inside text -> text (escapes)
    runs = _absorb(runs, True, MIN_TEXT_RUN)  # short text between binary -> binary
    return runs


def _runs(kinds: list[bool], size: int) -> list[tuple[int, int, bool]]:
    runs: list[tuple[int, int, bool]] = []
    for i, k in enumerate(kinds):
        a, b = i * BLOCK, min(size, (i + 1) * BLOCK)
        if runs and runs[-1][2] == k:
            runs[-1] = (runs[-1][0], b, k)
        else:
            runs.append((a, b, k))
    return runs


def _absorb(runs, kind: bool, min_len: int):
    """Turn runs of ``kind`` shorter than ``min_len`` into the other kind, then merge."""
    out: list[tuple[int, int, bool]] = []
    for a, b, k in runs:
        if k == kind and b - a < min_len and len(runs) > 1:
            k = not kind
        if out and out[-1][2] == k:
            out[-1] = (out[-1][0], b, k)
        else:
            out.append((a, b, k))
    return out


def cut(data: bytes, missing: frozenset, tokenize, frame_size: int,
        final: bool) -> tuple[list[tuple[bytes, bool]], bytes]:
    """Frames (bytes, is_text) for ``data``, each at most ``frame_size`` bytes, plus the bytes
    to carry into the next call.

    A text frame never ends with untokenisable bytes (escapes attach to the next token): such a
    tail is carried over when more input follows (``final`` False: it may be a multibyte
    character cut by the buffer), else emitted as a binary frame of its own.
    """
    frames: list[tuple[bytes, bool]] = []
    carry = b""
    runs = plan(data, missing, tokenize)
    for ri, (a, b, is_text) in enumerate(runs):
        for p in range(a, b, frame_size):
            piece = data[p:min(b, p + frame_size)]
            if not is_text:
                frames.append((piece, False))
                continue
            bad = bad_mask(piece, missing)
            k = len(piece)
            while k and bad[k - 1]:
                k -= 1
            last = ri == len(runs) - 1 and p + frame_size >= b
            if k:
                frames.append((piece[:k], True))
            if k < len(piece):
                if last and not final:
                    carry = piece[k:]
                else:
                    frames.append((piece[k:], False))
    return frames, carry
