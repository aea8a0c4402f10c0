"""The text path never aborts and always reproduces its input (tests/fuzz/text_path.py), in
this process: an abort inside llama.cpp's tokenizer ends the test run."""

from __future__ import annotations

import itertools
import random

import pytest

from nacrith.decoder import decompress
from nacrith.policy import compress
from tests.fuzz import text_path


@pytest.mark.parametrize("length", [1, 2, 3])
def test_every_byte_pattern_inside_text(session, length):
    for data in text_path.embed(text_path.patterns(length), per=8192):
        text_path.check(session.model, data)


def test_four_byte_patterns_above_u10ffff_and_the_rest(session):
    """Every 4-byte pattern whose lead byte starts a 4-byte sequence or none (F0..FF: F4 90..BF
    and F5..F7 decode above U+10FFFF), the following bytes at every class edge; other leads
    sampled."""
    pats = [bytes((lead, *rest)) for lead in range(0xF0, 0x100)
            for rest in itertools.product(text_path.CLASS_EDGES, repeat=3)]
    rng = random.Random(4)
    pats += [bytes([rng.randrange(0x80, 0xF0)] + [rng.choice(text_path.CLASS_EDGES) for _ in range(3)])
             for _ in range(20000)]
    for data in text_path.embed(pats, per=16384):
        text_path.check(session.model, data)


def test_random_mixes(session):
    res = text_path.campaign(session.model, seconds=8, seed=1)
    assert res["inputs"] > 20


@pytest.mark.parametrize("data", [b"hello \xf4\x90\x80\x80 world\n", b"a \xf5\x80\x80\x80 b \xf7\xbf\xbf\xbf c",
                                  b"text " * 300 + bytes(range(256)) * 6 + b" more text" * 200])
def test_code_points_above_u10ffff_round_trip(session, data):
    assert decompress(compress(data, session), session) == data
