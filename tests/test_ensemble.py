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
from nacrith.session import Options
from nacrith.policy import compress
from nacrith.decoder import decompress
from nacrith.container import iter_frames
from nacrith.coder import CDF_TOTAL, Decoder, Encoder, cdf_from_probs
from nacrith.container import EndFrame
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
    opts = Options(ensemble=ens, window=Window(40, 4, 12), max_lanes=2, min_lane_tokens=60)
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
                                           window=Window(48, 4, 12)))
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
    a = len(compress(data, session, Options(ensemble=LLM_ONLY, window=w)))
    b = len(compress(data, session, Options(window=w)))
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
