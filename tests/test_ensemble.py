"""The ensemble heads: round trips with every combination on/off, the confidence skip with
deferred KV feeding across window slides, header-carried hyper-parameters, and property tests of
each head's update."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nacrith import _native
from nacrith._native import _testing
from nacrith.options import Options
from nacrith.policy import compress
from nacrith.decoder import decompress
from nacrith.format import iter_frames
from nacrith.coder import CDF_TOTAL, Decoder, Encoder, cdf_from_probs
from nacrith.format import EndFrame
from nacrith.params import LLM_ONLY, MIXER_GEOMETRIC, MIXER_LINEAR, EnsembleParams
from nacrith.ensemble import lane_model, lane_models
from nacrith.params import Window

from .conftest import corpus


@pytest.mark.parametrize("ngram,bias,mixer,skip", list(itertools.product((0, 3), (0.0, 0.08),
                                                                        (MIXER_LINEAR, MIXER_GEOMETRIC),
                                                                        (0.0, 2.0))))
def test_every_head_combination_round_trips(session, ngram, bias, mixer, skip):
    data = corpus("canterbury/asyoulik.txt")[2000:2300]
    ens = EnsembleParams(ngram_order=ngram, bias_lr=bias, mixer=mixer, skip_bits=skip)
    blob = compress(data, session, Options(ensemble=ens))
    frames = [f for f in iter_frames(blob) if not isinstance(f, EndFrame)]
    assert decompress(blob, session) == data
    if frames and frames[0].params is not None:
        assert frames[0].params.ensemble == ens


def test_skip_with_slides_and_lanes(session):
    """Many skipped tokens (repetitive text, high threshold) across small-window slides, in
    several lanes: the deferred tokens must reach the KV cache exactly as in the encoder."""
    text = (b"The Queen said: off with their heads! The King said: not yet. " * 12
            + corpus("canterbury/alice29.txt")[9000:9400])
    ens = EnsembleParams(ngram_order=4, skip_bits=3.0)
    opts = Options(ensemble=ens, window=Window(40, 4, 12), max_lanes=2, min_lane_tokens=60, kv_budget=0)
    blob = compress(text, session, opts)
    assert decompress(blob, session) == text
    # the skip really happened: replay the first lane's model to count
    m = session.model
    lane = m.tokenize(text)[: (len(m.tokenize(text)) + 1) // 2]
    lm = lane_model(ens, m.n_vocab)
    skipped = 0
    for t in lane:
        skipped += lm.prepare()
        _testing.observe(lm, int(t))
    assert skipped > 20


@pytest.mark.parametrize("shared", [False, True])
def test_shared_and_independent_lane_heads(session, shared):
    data = corpus("canterbury/asyoulik.txt")[5000:6200] + b" stray \xff byte"
    ens = EnsembleParams(shared_heads=shared, skip_bits=1.5)
    blob = compress(data, session, Options(ensemble=ens, max_lanes=3, min_lane_tokens=40,
                                           window=Window(48, 4, 12), kv_budget=0))
    assert decompress(blob, session) == data


def test_hyper_parameters_come_from_the_header(session):
    data = corpus("canterbury/plrabn12.txt")[:700]
    ens = EnsembleParams(ngram_order=2, ngram_bits=10, ngram_kappa=2.0, bias_lr=0.3, mixer=MIXER_LINEAR,
                         mix_lr=0.9, mix_init=0.5, skip_bits=1.0)
    blob = compress(data, session, Options(ensemble=ens))
    assert decompress(blob, session) == data  # decoder given no options


def test_ensemble_beats_llm_only_on_real_text(session):
    # the repeat lies beyond the LLM's (small) window: the n-gram and bias heads remember it
    data = corpus("canterbury/alice29.txt")[:1500] * 2
    w = Window(64, 4, 16)
    a = len(compress(data, session, Options(ensemble=LLM_ONLY, window=w, kv_budget=0)))
    b = len(compress(data, session, Options(window=w, kv_budget=0)))
    assert b < 0.9 * a, (a, b)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), order=st.integers(0, 5), bias=st.sampled_from([0.0, 0.01, 0.5]),
       mixer=st.sampled_from([0, 1]), steps=st.integers(1, 40), vocab=st.integers(2, 300))
def test_head_updates_keep_valid_distributions(seed, order, bias, mixer, steps, vocab):
    rng = np.random.default_rng(seed)
    m = _native.LaneModel(vocab, ngram_order=order, ngram_bits=6, bias_lr=bias, mixer=mixer,
                          mix_lr=0.5 if mixer == 0 else 0.05, skip_bits=1.0 if order else 0.0)
    enc = Encoder()
    syms, logits_seen = [], []
    for _ in range(steps):
        lg = (rng.standard_normal(vocab) * rng.uniform(0, 30)).astype(np.float32)
        skip = m.prepare()
        p = np.frombuffer(_testing.distribution(m, None if skip else lg), dtype=np.float64)
        assert len(p) == vocab + 1  # last: escape
        assert np.isfinite(p).all() and (p >= 0).all()
        assert abs(p.sum() - 1.0) < 1e-9
        cdf = cdf_from_probs(p)
        assert np.diff(cdf.astype(np.int64)).min() >= 1 and cdf[-1] == CDF_TOTAL
        y = int(rng.integers(vocab)) if rng.random() < 0.5 else int(np.argmax(p[:vocab]))  # a token, not the escape
        enc.encode_step(m, None if skip else lg, y)
        syms.append(y)
        logits_seen.append(lg)
    # the decoder side reproduces the symbols with a fresh model
    d = _native.LaneModel(vocab, ngram_order=order, ngram_bits=6, bias_lr=bias, mixer=mixer,
                          mix_lr=0.5 if mixer == 0 else 0.05, skip_bits=1.0 if order else 0.0)
    dec = Decoder(enc.finish())
    for y, lg in zip(syms, logits_seen):
        skip = d.prepare()
        assert dec.decode_step(d, None if skip else lg) == y
    for a, c in m.weights:
        assert np.isfinite(a) and np.isfinite(c)


def test_params_validation():
    with pytest.raises(ValueError):
        EnsembleParams(ngram_order=9)
    with pytest.raises(ValueError):
        EnsembleParams(bias_lr=1.5)
    with pytest.raises(ValueError):
        EnsembleParams.decode(b"\0" * 10)
    for e in (EnsembleParams(ngram_order=3, bias_lr=0.5, skip_bits=2.5), EnsembleParams(shared_heads=False)):
        assert EnsembleParams.decode(e.encode()) == e
    bad = bytearray(EnsembleParams().encode())
    bad[3] |= 0x80
    with pytest.raises(ValueError):
        EnsembleParams.decode(bytes(bad))
    # the match model: off unless named (version 1 parameters, presets 1 and 2, explicit fields
    # written before it), on in the default level (preset 3)
    from nacrith.format import encode_ensemble, read_ensemble
    from nacrith.params import DEFAULT_ENSEMBLE, ENSEMBLE_PRESETS

    assert EnsembleParams().match_min == 0 and EnsembleParams.decode(EnsembleParams().encode()).match_min == 0
    assert Options().ensemble == DEFAULT_ENSEMBLE and DEFAULT_ENSEMBLE.match_min == 4
    assert encode_ensemble(DEFAULT_ENSEMBLE) == bytes([3])
    for k in (1, 2):
        assert EnsembleParams(**ENSEMBLE_PRESETS[k]).match_min == 0
    on = EnsembleParams(match_min=5, match_bits=12, match_lr=0.25)
    assert read_ensemble(encode_ensemble(on), 0)[0] == on
    old = encode_ensemble(EnsembleParams(ngram_order=3))  # 0, Count 12, fields: cut to the first 9
    nine = bytes([0, 9]) + old[2:]
    cut = len(nine) - 1 - 1 - 8  # match_min, match_bits varints, match_lr binary64
    assert read_ensemble(nine[:cut], 0)[0] == EnsembleParams(ngram_order=3)
    for bad_match in (dict(match_min=1), dict(match_min=33), dict(match_bits=7), dict(match_lr=2.0)):
        with pytest.raises(ValueError):
            EnsembleParams(**bad_match)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm (Linux)")
def test_lane_model_memory_is_returned_between_frames():
    """A stream builds fresh lane models for every frame (18.9 MB of n-gram tables with the
    defaults). Resident memory must come back when a frame's models are freed: it once grew by
    ~19 MB every few frames (glibc served later tables from a fragmenting heap)."""
    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    params, V = EnsembleParams(), 49152
    z = np.zeros((1, V), np.float32)
    after = []
    for frame in range(8):
        models = lane_models(params, V, 2)
        enc = _native.Encoder()
        for t in range(100):
            for m in models:
                m.prepare()
                enc.encode_step(m, z, t % 50)
        scratch = np.ones(300_000)  # other allocations between frames, as a stream makes
        del models, enc, scratch
        after.append(rss_mb())
    assert after[-1] - after[1] < 8, f"RSS after each frame, MB: {[round(x, 1) for x in after]}"


def test_encode_block_is_encode_step_per_row():
    """The coder takes the model: a block of rows with escapes (two groups for 20 raw bytes)
    codes the same bytes as one encode_step per row, and decode_step returns the groups then the
    token. Without logits where the model does not skip, the step is refused."""
    rng = np.random.default_rng(5)
    V, T = 300, 60
    params = EnsembleParams(ngram_bits=8)
    z = (rng.standard_normal((T, V)) * 3).astype(np.float32)
    toks = rng.integers(0, V, T).astype(np.int32)
    raw = {3: b"\x80" * 20, 17: b"\xfe"}
    a, b = Encoder(), Encoder()
    ma, mb = lane_model(params, V), lane_model(params, V)
    a.encode_block(ma, z, toks, sorted(raw.items()))
    for t in range(T):
        mb.prepare()
        b.encode_step(mb, z[t], int(toks[t]), raw.get(t, b""))
    data = a.finish()
    assert data == b.finish()
    d, dec = lane_model(params, V), Decoder(data)
    for t in range(T):
        got = b""
        while isinstance(y := dec.decode_step(d, z[t]), bytes):
            got += y
        assert (y, got) == (toks[t], raw.get(t, b""))
    with pytest.raises(ValueError, match="logits required"):
        Encoder().encode_step(lane_model(params, V), None, 0)


def _repeats(rng, V, n_lanes):
    """Token lanes of a frame whose lanes repeat blocks of earlier lanes and of themselves."""
    block = rng.integers(0, V, 120).astype(np.int32)
    lanes = []
    for i in range(n_lanes):
        noise = rng.integers(0, V, 40 + 10 * i).astype(np.int32)
        lanes.append(np.concatenate([noise, block, rng.integers(0, V, 30), block[:90], block]).astype(np.int32))
    return lanes


def _code_lanes(params, V, lanes, z):
    """Encode the lanes step by step in the frame order (every lane's prepare(), then each lane's
    step, lane by lane), decode them the same way, check; (streams, models)."""
    models = lane_models(params, V, len(lanes))
    encs = [Encoder() for _ in lanes]
    T = max(len(x) for x in lanes)
    for t in range(T):
        active = [i for i, x in enumerate(lanes) if t < len(x)]
        skip = {i: models[i].prepare() for i in active}
        for i in active:
            encs[i].encode_step(models[i], None if skip[i] else z[i, t], int(lanes[i][t]))
    streams = [e.finish() for e in encs]
    dmodels = lane_models(params, V, len(lanes))
    decs = [Decoder(s) for s in streams]
    out = [[] for _ in lanes]
    for t in range(T):
        active = [i for i, x in enumerate(lanes) if t < len(x)]
        skip = {i: dmodels[i].prepare() for i in active}
        for i in active:
            out[i].append(decs[i].decode_step(dmodels[i], None if skip[i] else z[i, t]))
    assert out == [x.tolist() for x in lanes]
    return streams, models


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("base", ["llm only", "default"])
def test_match_model_round_trips_and_predicts(shared, base):
    """Without the LLM's help (random logits), the match model must find the repeated blocks
    (within a lane, and across lanes when they share heads) and code them in far fewer bytes;
    ignoring its prediction makes this fail."""
    rng = np.random.default_rng(11)
    V = 700
    lanes = _repeats(rng, V, 3)
    z = (rng.standard_normal((3, max(len(x) for x in lanes), V)) * 2).astype(np.float32)
    common = dict(shared_heads=shared)
    if base == "llm only":
        common.update(ngram_order=0, bias_lr=0.0, mixer=MIXER_LINEAR, skip_bits=0.0)
    else:
        common.update(ngram_bits=10)
    off, _ = _code_lanes(EnsembleParams(**common), V, lanes, z)
    on, models = _code_lanes(EnsembleParams(match_min=3, match_bits=12, match_lr=0.1, **common), V, lanes, z)
    size_off, size_on = sum(map(len, off)), sum(map(len, on))
    # the n-gram head (default) already codes part of the repeats
    assert size_on < (0.8 if base == "llm only" else 0.9) * size_off, (size_on, size_off)
    pred, hits = models[1].match
    assert pred > 150 and hits > 0.9 * pred
    if shared and base == "llm only":  # lane 1's first block is only in lane 0 (and lane 2's)
        lone, _ = _code_lanes(EnsembleParams(match_min=3, match_bits=12, match_lr=0.1,
                                             **dict(common, shared_heads=False)), V, lanes, z)
        assert sum(map(len, on)) < sum(map(len, lone))


def test_match_model_on_real_text_beyond_the_window(session):
    """A block repeated twice more beyond a small window: the match model codes the repeats in
    well under half of what they cost the LLM alone, and the stream records and decodes it."""
    block = corpus("canterbury/alice29.txt")[3000:3800]
    w = Window(64, 4, 16)
    llm = EnsembleParams(ngram_order=0, bias_lr=0.0, mixer=MIXER_LINEAR, skip_bits=0.0)
    ens = EnsembleParams(ngram_order=0, bias_lr=0.0, mixer=MIXER_LINEAR, skip_bits=0.0, match_min=4,
                         match_lr=0.1)
    one = len(compress(block, session, Options(ensemble=llm, window=w, kv_budget=0)))
    a = len(compress(block * 3, session, Options(ensemble=llm, window=w, kv_budget=0)))
    b = compress(block * 3, session, Options(ensemble=ens, window=w, kv_budget=0))
    assert decompress(b, session) == block * 3
    frames = [f for f in iter_frames(b) if not isinstance(f, EndFrame)]
    assert frames[0].params.ensemble == ens
    assert len(b) - one < 0.5 * (a - one), (one, a, len(b))  # measured: 394, 551, 430


def test_match_model_follows_an_earlier_lane_at_no_lag():
    """Shared heads: a lane whose text is the same as lane 0's, coded at the same steps, is
    predicted from lane 0's token of the same step (lane 0 codes it first)."""
    rng = np.random.default_rng(3)
    V = 500
    toks = rng.integers(0, V, 300).astype(np.int32)
    lanes = [toks, toks.copy()]
    z = (rng.standard_normal((2, 300, V)) * 2).astype(np.float32)
    ens = EnsembleParams(ngram_order=0, bias_lr=0.0, mixer=MIXER_LINEAR, skip_bits=0.0, match_min=2,
                         match_bits=10, match_lr=0.1)
    streams, models = _code_lanes(ens, V, lanes, z)
    assert len(streams[1]) < 0.2 * len(streams[0]), [len(s) for s in streams]
    assert models[1].match[1] > 280
