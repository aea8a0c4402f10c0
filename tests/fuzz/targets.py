"""Fuzz targets per layer, none of which needs the model (zstd style: one target per parser).

Each ``target_*(data)`` feeds arbitrary bytes to one layer and checks what must hold for any
input: it either raises the layer's own error (``FormatError``: a clear one-line message, no
other exception) or returns a result that passes the layer's own checks. Used by
``tests/test_fuzz_layers.py`` (bounded hypothesis runs), ``tests/fuzz/fuzz_layers.py`` (atheris,
long campaigns) and ``tests/fuzz/campaign_layers.py`` (mutation campaign, summary in
``bench/results/fuzz_layers.json``).
"""

from __future__ import annotations

from nacrith.format import (FRAME_PARAMS, LLMParams, StreamParser, check, read_header, read_params, varint)
from nacrith.errors import FormatError


def target_parser(data: bytes) -> None:
    """The stream/container pull parser, whole-buffer and fed byte by byte: same items or same
    error class; structure only (no payload is decoded)."""
    def run(p, chunks):
        items = []
        try:
            if chunks is None:
                return list(p), None
            for c in chunks:
                p.feed(c)
                while (x := p.next()) is not None:
                    items.append(x)
            p.close()
            return items, None
        except FormatError as e:  # TruncatedError and ChecksumError are FormatErrors
            assert str(e) and "\n" not in str(e)
            return items, type(e)

    whole, err = run(StreamParser(data), None)
    step = max(1, len(data) // 7)
    fed, err2 = run(StreamParser(), [data[i:i + step] for i in range(0, len(data), step)])
    assert (err is None) == (err2 is None), (err, err2)
    if err is None:
        assert [type(x) for x in whole] == [type(x) for x in fed]


def target_params(data: bytes) -> None:
    """A params frame around arbitrary block bytes (with a valid check, so the block parser is
    reached), and the same bytes as a stream header: a parsed block re-encodes to a block that
    parses to the same params."""
    frame = bytes([FRAME_PARAMS]) + varint(len(data)) + data
    try:
        p, end = read_params(frame + check(frame), 0)
    except FormatError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert isinstance(p, LLMParams) and end == len(frame) + 4
        again = p.encode()
        assert read_params(again, 0)[0] == p
    try:
        read_header(data)
    except FormatError as e:
        assert str(e)


def target_arith_decoder(data: bytes) -> None:
    """The native arithmetic decoder on random bytes with a CDF made from the first bytes: every
    symbol is in range and equals the pure-Python reference decoder's (differential)."""
    import numpy as np

    from nacrith.coder import Decoder, RefDecoder, cdf_from_probs

    n = 2 + (data[0] if data else 0) % 300
    head, stream = data[1:1 + n], data[1 + n:]
    probs = np.frombuffer(head.ljust(n, b"\x01"), np.uint8).astype(np.float64) + 0.5
    cdf = cdf_from_probs(probs)
    native, ref = Decoder(stream), RefDecoder(stream)
    for _ in range(64):
        s = native.decode(cdf)
        assert 0 <= s < n and s == ref.decode(cdf)


def target_lzma2(data: bytes) -> None:
    """A Lzma2 frame payload (filter, dictionary, raw LZMA2 chunks) declaring a size from the
    first byte: it decodes to exactly that many bytes or raises FormatError."""
    from nacrith import lzma2

    raw_size = 1 + (data[0] if data else 0) * 37
    try:
        out = lzma2.decode(bytes(data[1:]), raw_size, "fuzz")
    except FormatError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert len(out) == raw_size


TARGETS = {"parser": target_parser, "params": target_params, "arith": target_arith_decoder,
           "lzma2": target_lzma2}
