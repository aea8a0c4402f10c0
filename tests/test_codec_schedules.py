"""The speed issue's features, each checked for exactness: drafted (speculative) decoding of
one-lane frames gives the plain decoder's tokens and logits, compression levels are recorded
settings (decoding takes none), attention modes are told apart by the backend id."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nacrith import llm_frame
from nacrith.format import iter_frames
from nacrith.decoder import decompress
from nacrith.lanes import PromptLookup, decode_lane_drafted, encode_lanes
from nacrith.model import LlamaContext
from nacrith.params import DEFAULT_ENSEMBLE, Window
from nacrith.policy import compress
from nacrith.options import DEFAULT_LEVEL, LEVELS, Options

from .conftest import corpus


def test_prompt_lookup_drafts_what_followed_the_last_occurrence():
    out = np.array([5, 6, 7, 8, 9, 5, 6, 7, 0, 0], np.int32)
    d = PromptLookup(n=3, k_max=4)
    for t in range(1, 9):
        d.add(out, t)
    assert d.propose(out, 8, room=4) == [8]  # k starts at 1
    d.feedback(1, 1)
    assert d.propose(out, 8, room=4) == [8, 9]  # doubled after a whole draft was right
    assert d.propose(out, 8, room=1) == [8]  # never past the room left
    d.feedback(2, 0)
    assert d.k == 1
    assert PromptLookup().propose(out, 2, room=4) == []  # shorter than n: no draft


def test_prompt_lookup_drafts_only_after_a_long_enough_match():
    out = np.array([1, 5, 6, 7, 8, 9, 2, 5, 6, 7, 0], np.int32)  # 5 6 7 repeats, 1 != 2 before it
    for min_match, want in ((3, [8]), (4, [])):
        d = PromptLookup(n=3, k_max=4, min_match=min_match)
        for t in range(1, 11):
            d.add(out, t)
        assert d.propose(out, 10, room=4) == want
    out[6] = 1  # now 1 5 6 7 matches too
    d = PromptLookup(n=3, k_max=4, min_match=4)
    for t in range(1, 11):
        d.add(out, t)
    assert d.propose(out, 10, room=4) == [8]
    with pytest.raises(ValueError):
        PromptLookup(n=3, min_match=2)


def test_prompt_lookup_stops_drafting_while_guesses_fail_and_resumes_when_they_come_true():
    d = PromptLookup(n=1, k_max=1, min_match=1, min_hit_rate=0.3)
    out = np.zeros(400, np.int32)
    out[0] = 7
    t, drafted = 1, []
    for i in range(400 - 1):
        d.add(out, t)
        drafted.append(bool(d.propose(out, t, room=1)))
        # first 7 then a fresh token (every guess wrong), later 7 7 7 ... (every guess right)
        out[t] = 7 if (i % 2 == 1 or i >= 200) else 1000 + i
        t += 1
    assert 1 <= sum(drafted[:200]) <= 6  # a guess every other step: closed after a few misses
    assert d.hit_rate > 0.9 and all(drafted[260:])  # watched guesses came true: open again


def test_drafted_decoder_sees_the_plain_schedule_logits(session):
    """Across a window slide, on repetitive text (long drafts accepted) and prose (many rejected):
    every step's logits equal the encoder's, and fewer llama_decode calls are made."""
    m = session.model
    text = corpus("canterbury/alice29.txt")[:1200]
    toks = m.tokenize(text[:300] * 2 + text[300:900])
    w = Window(160, 4, 48)
    enc = []
    with LlamaContext(m, n_seq=1, n_ctx_seq=160, n_batch=64) as ctx:
        encode_lanes(ctx, [toks], m.bos, w, lambda l, t0, lg: enc.append(lg.copy()))
    enc = np.concatenate(enc)
    got, stats = [], {}

    def choose(lane, lg):
        got.append(lg.copy())
        return int(toks[len(got) - 1])

    with LlamaContext(m, n_seq=1, n_ctx_seq=160, n_batch=9) as ctx:
        out = decode_lane_drafted(ctx, len(toks), m.bos, w, choose, None, PromptLookup(k_max=8), stats)
    assert np.array_equal(out, toks)
    assert np.array_equal(np.stack(got), enc), f"max |diff| {np.abs(np.stack(got) - enc).max()}"
    assert stats["accepted"] > 50 and stats["calls"] < len(toks) - 50
    assert stats["drafted"] > stats["accepted"]  # some drafts were wrong and their cells removed


def test_drafted_and_plain_decoders_decode_the_same_stream(session, monkeypatch):
    text = corpus("canterbury/xargs.1")
    data = text[:700] + text[:700]
    blob = compress(data, session, Options(min_lane_tokens=10 ** 6))
    assert [getattr(f, "kind", None) for f in iter_frames(blob)].count(3) == 1
    stats: dict = {}
    orig = llm_frame.decode_lane_drafted

    def counted(ctx, length, bos, window, choose, needs_llm, drafts, _stats):
        stats["tokens"] = length
        return orig(ctx, length, bos, window, choose, needs_llm, drafts, stats)

    monkeypatch.setattr(llm_frame, "decode_lane_drafted", counted)
    assert decompress(blob, session) == data
    assert stats["accepted"] > 20 and stats["calls"] == stats["tokens"] - stats["accepted"]
    monkeypatch.setattr(session.execution, "draft_max", 0)  # the plain decoder
    monkeypatch.setattr(llm_frame, "decode_lane_drafted", None)
    assert decompress(blob, session) == data


def test_levels_are_recorded_settings():
    assert Options() == Options.from_level(DEFAULT_LEVEL)
    assert sorted(LEVELS) == list(range(1, 10))
    assert Options.from_level(1).window.size < Options.from_level(9).window.size
    assert Options.from_level(3, window=Window(64, 4, 16)).window == Window(64, 4, 16)
    with pytest.raises(ValueError):
        Options.from_level(10)
    with pytest.raises(TypeError):
        Options.from_level("9")


def test_a_level_needs_no_flag_to_decode(session):
    data = corpus("canterbury/grammar.lsp")[:900]
    a = compress(data, session, Options.from_level(1))
    b = compress(data, session, Options.from_level(7))
    assert a != b
    assert decompress(a, session) == data and decompress(b, session) == data



def test_the_decoders_schedule_encodes_the_same_bytes(session):
    """What a model not proven batch-invariant (and a GPU) uses: encoding one token per lane per
    step. On the default model it must give the batched encoder's lane streams, shared heads and
    lane heads alike; the stream records the schedule (3 bytes) and decoding then uses no drafts."""
    from nacrith.format import SCHEDULE_LOCKSTEP, StreamParser

    data = corpus("canterbury/alice29.txt")[:1200]
    for opts in (Options(min_lane_tokens=60),
                 Options(min_lane_tokens=60, ensemble=replace(DEFAULT_ENSEMBLE, shared_heads=False))):
        s1, s2 = {}, {}
        batched = compress(data, session, opts, stats=s1)
        exact = compress(data, session, replace(opts, schedule="lockstep"), stats=s2)
        assert "lockstep_tokens" not in s1 and s2["lockstep_tokens"] == s2["tokens"] > 0
        pb, pe = StreamParser(batched), StreamParser(exact)
        fb, fe = list(pb), list(pe)
        assert pe.header.params.schedule == SCHEDULE_LOCKSTEP and pb.header.params.schedule == 0
        assert len(exact) == len(batched) + 3
        assert [bytes(f.payload) for f in fb if hasattr(f, "payload")] == [bytes(f.payload) for f in fe if hasattr(f, "payload")]
        assert decompress(exact, session) == data
