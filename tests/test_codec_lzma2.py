"""Lzma2 frames (type 7, ``nacrith.lzma2``): every filter and literal setting round-trips, the
search finds the filter that fits the data, and bad payloads are rejected."""

from __future__ import annotations

import itertools
import lzma
import random
import struct
from pathlib import Path

import pytest

from nacrith import lzma2
from nacrith.errors import FormatError

WAVE = struct.pack("<20000h", *itertools.accumulate(random.Random(5).randrange(-3, 4) for _ in range(20000)))
# 16-bit samples of a random walk: what a delta filter of distance 2 is for
TEXT = b"".join(b"line %d of a log, status=%s\n" % (i, b"ok" if i % 7 else b"retry") for i in range(2000))


def xz_size(data: bytes) -> int:
    return len(lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, preset=9 | lzma.PRESET_EXTREME))


@pytest.mark.parametrize("filt", sorted(lzma2.FILTERS))
def test_each_filter_round_trips(filt):
    data = WAVE[:5000] + TEXT[:3000]
    for dist in ((1, 2, 256) if filt == lzma2.FILTER_DELTA else (0,)):
        payload = lzma2.encode(data, filt, dist)
        assert payload[0] == filt
        assert lzma2.decode(payload, len(data), "t") == data


@pytest.mark.parametrize("literals", [(0, 0, 0), (4, 0, 0), (0, 4, 4), (1, 3, 2)])
def test_literal_settings_round_trip(literals):
    payload = lzma2.encode(TEXT, 0, 0, literals)
    assert lzma2.decode(payload, len(TEXT), "t") == TEXT


def test_dictionary_property():
    assert [lzma2.dict_size(p) for p in (0, 1, 2, 40)] == [4096, 6144, 8192, 2**32 - 1]
    assert lzma2.dict_prop(1) == 0 and lzma2.dict_prop(4097) == 1 and lzma2.dict_prop(1 << 30) == 28  # capped at 64 MiB, as xz -9
    for n in (5000, 100_000, 3 << 20):
        assert lzma2.dict_size(lzma2.dict_prop(n)) >= n > lzma2.dict_size(lzma2.dict_prop(n) - 1)


def test_search_picks_delta_for_16_bit_samples_and_beats_xz():
    filt, dist, _ = lzma2.choose(WAVE)[0]
    assert (filt, dist) == (lzma2.FILTER_DELTA, 2)
    best = min(lzma2.candidates(WAVE), key=len)
    assert lzma2.decode(best, len(WAVE), "t") == WAVE
    assert len(best) < xz_size(WAVE) * 0.9


def test_default_settings_are_always_a_candidate():
    """The first candidate is xz -9e's own settings: never larger than the .xz file's data."""
    data = random.Random(1).randbytes(3000) + TEXT[:2000]
    first = lzma2.candidates(data)[0]
    assert first[0] == lzma2.FILTER_NONE and len(first) <= xz_size(data) - 40


def test_sample_of_large_input_spans_it():
    data = bytes(range(256)) * 8192  # 2 MiB
    s = lzma2._sample(data)
    assert len(s) == lzma2.SAMPLE


def test_decoder_caps_dictionary_at_frame_size():
    """A payload declaring a 4 GiB dictionary decodes with one the size of the frame."""
    payload = bytearray(lzma2.encode(TEXT, 0))
    payload[1] = 40
    assert lzma2.decode(bytes(payload), len(TEXT), "t") == TEXT


@pytest.mark.parametrize("payload, match", [
    (b"\x00", "too short"),
    (b"\x09\x10\x00", "unknown lzma2 filter 9"),
    (b"\x00\x29\x00", "dictionary property"),
    (b"\x01\x01", "dictionary property"),
    (b"\x00\x10\x07\x00", "corrupt"),
])
def test_bad_payloads(payload, match):
    with pytest.raises(FormatError, match=match):
        lzma2.decode(payload, 10, "frame at offset 13")


def test_wrong_length_and_trailing_data_rejected():
    payload = lzma2.encode(TEXT, 0)
    for bad, size in ((payload, len(TEXT) - 1), (payload, len(TEXT) + 1), (payload + b"\x00", len(TEXT)),
                      (payload[:-1], len(TEXT))):
        with pytest.raises(FormatError, match="frame at offset 13"):
            lzma2.decode(bad, size, "frame at offset 13")


def test_search_picks_x86_filter_for_call_instructions():
    """The conformance vector lzma2-x86.bin: ``call rel32`` to a few targets among filler bytes."""
    code = (Path(__file__).resolve().parents[1] / "codec" / "vectors" / "valid" / "lzma2-x86.bin").read_bytes()
    assert lzma2.choose(code)[0][0] == 2
    sizes = [len(c) for c in lzma2.candidates(code)]
    assert len(sizes) >= 2 and min(sizes[1:]) < sizes[0]
