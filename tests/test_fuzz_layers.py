"""Bounded hypothesis runs of the per-layer fuzz targets (tests/fuzz/targets.py): the stream
parser, the params block, the arithmetic decoder on random bytes, LZMA2 frames. No model.
Seeds: the conformance vectors (and pieces of them), so the runs start from valid structure."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from tests.fuzz.targets import TARGETS

VEC = Path(__file__).resolve().parents[1] / "codec" / "vectors"
SEEDS = [p.read_bytes() for p in sorted(VEC.glob("*/*.nc")) if p.stat().st_size < 4096]


def _mutated(draw_seed, flips):
    b = bytearray(draw_seed)
    for i, v in flips:
        if b:
            b[i % len(b)] ^= v
    return bytes(b)


inputs = st.one_of(
    st.binary(max_size=512),
    st.builds(_mutated, st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(1, 255)),
                                                       max_size=4)),
    st.builds(lambda s, a, b: s[a % (len(s) + 1):][:b], st.sampled_from(SEEDS), st.integers(0, 4096),
              st.integers(0, 600)),
)
FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_layer_fuzz_target(name):
    target = TARGETS[name]

    @FUZZ
    @given(inputs)
    @example(b"")
    def run(data):
        target(data)

    run()


def test_targets_reach_their_layer():
    """Each target sees valid input too (not only rejections): a vector parses, a preset block
    parses, the decoder decodes, a real LZMA2 payload decodes."""
    from nacrith import lzma2
    from nacrith.format import LLMParams, StreamParser

    assert any(isinstance(x, LLMParams) or getattr(x, "params", None) for s in SEEDS for x in _items(s))
    TARGETS["params"](bytes([1, 1, 0, 1, 1, 1]))
    TARGETS["arith"](bytes(range(256)) * 3)
    raw = b"hello hello hello " * 3
    assert lzma2.decode(lzma2.encode(raw, 0), len(raw), "x") == raw
    assert StreamParser


def _items(blob):
    from nacrith.format import StreamParser
    from nacrith.errors import FormatError

    try:
        return list(StreamParser(blob))
    except FormatError:
        return []
