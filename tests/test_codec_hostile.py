"""Hostile and broken inputs, wrong environments, interrupted runs (see tests/fuzz for the
long campaign)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from nacrith.options import Options
from nacrith.session import Session
from nacrith.policy import compress
from nacrith.decoder import decompress
from nacrith.format import iter_frames
from nacrith.format import (FRAME_LLM, FRAME_ZSTD, StreamHeader, frame_checksum, total_hasher, varint,
                               write_end, write_frame)
from nacrith.errors import FormatError, NacrithError
from nacrith.params import Window

from .conftest import corpus
from .fuzz.mutate import llm_stream, mutate


@pytest.fixture(scope="module")
def seeds(session):
    alice = corpus("canterbury/alice29.txt")
    items = [alice[7000:7060], corpus("canterbury/sum")[:500], b"x" * 300 + corpus("canterbury/fields.c")[:80]]
    opts = Options(frame_size=160, window=Window(32, 2, 8), kv_budget=0)
    # the prose seed is forced onto the LLM path (compress would pick zstd for 60 bytes)
    return [(d, llm_stream(d, session, opts) if i == 0 else compress(d, session, opts))
            for i, d in enumerate(items)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_mutated_streams_never_decode_wrong(session, seeds, seed):
    rng = random.Random(seed)
    original, blob = seeds[seed % len(seeds)]
    _, bad = mutate(blob, rng, seeds[(seed + 1) % len(seeds)][1])
    try:
        out = decompress(bad, session)
    except NacrithError:
        return
    assert out == original


def test_llm_frame_declaring_many_tokens_fails_fast(session):
    """A tiny LLM frame that declares (up to the frame size) many tokens: the lane stream runs
    dry long before, and the decoder stops instead of decoding garbage for hours."""
    data = corpus("canterbury/alice29.txt")[:600]
    good = compress(data, session, Options(frame_size=1 << 20))
    llm = [f for f in iter_frames(good) if getattr(f, "kind", None) == FRAME_LLM]
    assert llm, "600 bytes of prose should take the LLM path"
    head = good[:llm[0].offset]  # stream header + params frame
    n_fake = 200_000
    lanes = varint(1) + varint(n_fake) + varint(3) + b"\x12\x34\x56"
    raw = b"a" * n_fake
    frame = bytes([FRAME_LLM]) + varint(len(raw)) + varint(len(lanes)) + frame_checksum(raw) + lanes
    h = total_hasher()
    h.update(raw)
    bomb = head + frame + write_end()
    t0 = time.time()
    with pytest.raises(NacrithError):
        decompress(bomb, session)
    assert time.time() - t0 < 30


def test_decoding_with_other_threads_and_workers(session):
    data = corpus("canterbury/asyoulik.txt")[500:1300]
    blob = compress(data, session, Options(max_lanes=2, min_lane_tokens=50))
    with Session(threads=1, workers=1) as one_thread:
        assert decompress(blob, one_thread) == data


def _slow_input(tmp_path):
    p = tmp_path / "big.txt"
    p.write_bytes(corpus("canterbury/lcet10.txt")[:60000])
    return p


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupt_leaves_no_partial_output(tmp_path, sig):
    src = _slow_input(tmp_path)
    # the signal at its default disposition in the child: a test run started in the background
    # gets SIGINT ignored, and nacrith (as gzip) keeps a signal its caller ignores ignored
    proc = subprocess.Popen([sys.executable, "-m", "nacrith.cli", "-q", str(src)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    time.sleep(8)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "interrupted" in err and err.count("\n") == 1, err
    assert not (tmp_path / "big.txt.nc").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]  # no temp file, input kept


def test_garbage_and_foreign_inputs(session):
    rng = random.Random(7)
    for _ in range(200):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        with pytest.raises(NacrithError):
            decompress(blob, session)
    # a valid header followed by garbage
    for _ in range(100):
        blob = StreamHeader(1 << 20).encode() + bytes(rng.randrange(256) for _ in range(rng.randrange(80)))
        with pytest.raises(NacrithError):
            decompress(blob, session)


def test_zstd_payload_declaring_a_huge_content_size_is_rejected(session):
    """A zstd frame header (RFC 8878) whose content size field claims 2**50 bytes: zstandard
    would try to allocate that before decoding; the decoder must refuse it instead."""
    raw = b"a" * 64
    zstd_frame = (b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + (1 << 50).to_bytes(8, "little")
                  + bytes([0x03, 0x02, 0x00]) + b"a")  # 8-byte size field; last block, RLE x 64
    h = total_hasher()
    h.update(raw)
    blob = StreamHeader(1 << 20).encode() + write_frame(FRAME_ZSTD, raw, zstd_frame) + write_end()
    with pytest.raises(FormatError, match="declares"):
        decompress(blob, session)
