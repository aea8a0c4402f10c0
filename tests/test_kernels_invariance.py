"""The property the whole format rests on: llama.cpp logits do not depend on how tokens are
batched (one at a time, large prefill batches, several lanes per batch), on the thread count,
or on which lanes share a context, in every attention mode a stream may name (nacrith.model.ATTENTION_MODES).

If an upgrade of llama-cpp-python breaks this, these tests fail instead of files decoding wrong.
"""

from __future__ import annotations

import numpy as np
import pytest

from nacrith.lanes import decode_lanes, encode_lanes
from nacrith.params import Window
from nacrith.model import ATTENTION_MODES, LlamaContext, available

from .conftest import corpus

N = 160


@pytest.fixture(params=[a for a in ATTENTION_MODES.values()], ids=lambda a: a.name)
def att(request):
    """Every attention mode a stream may name (those this build can run; the patched kernel's
    mode is built by install.sh, so CI always runs it)."""
    if not available(request.param):
        pytest.skip(f"{request.param.name}: this llama.cpp build lacks nacrith's kernel")
    return request.param


@pytest.fixture(scope="module")
def tokens(session):
    return session.model.tokenize(corpus("canterbury/alice29.txt")[:4000])


def _one_by_one(ctx, seq):
    return ctx.prefill(seq, 1)


def test_batch_shape_and_threads_do_not_change_logits(session, tokens, att):
    m = session.model
    seq = np.concatenate([[m.bos], tokens[:N - 1]]).astype(np.int32)
    with LlamaContext(m, n_seq=1, n_ctx_seq=256, n_batch=128, n_threads=2, attention=att) as ctx:
        ref = _one_by_one(ctx, seq)
        ctx.clear()
        full = ctx.prefill(seq, 128)
        ctx.clear()
        odd = ctx.prefill(seq, 37)
    with LlamaContext(m, n_seq=1, n_ctx_seq=256, n_batch=128, n_threads=1, attention=att) as ctx:
        one_thread = ctx.prefill(seq, 128)
    assert np.array_equal(ref, full), f"batched prefill differs: max |diff| {np.abs(ref - full).max()}"
    assert np.array_equal(ref, odd)
    assert np.array_equal(ref, one_thread), "logits depend on the thread count"


def test_lanes_in_one_batch_match_a_lane_alone(session, tokens, att):
    m = session.model
    seq = np.concatenate([[m.bos], tokens[:N - 1]]).astype(np.int32)
    with LlamaContext(m, n_seq=1, n_ctx_seq=256, n_batch=128, attention=att) as ctx:
        ref = ctx.prefill(seq, 128)
    with LlamaContext(m, n_seq=3, n_ctx_seq=256, n_batch=128, attention=att) as ctx:
        rows = {s: [] for s in range(3)}
        for i in range(N):
            lg = ctx.decode(np.full(3, seq[i], np.int32), np.full(3, i, np.int32), np.arange(3, dtype=np.int32))
            for s in range(3):
                rows[s].append(lg[s].copy())
    for s in range(3):
        assert np.array_equal(np.stack(rows[s]), ref), f"lane {s} differs"


def test_sliding_window_schedule_encoder_equals_decoder(session, tokens, att):
    """Encoder rounds (big batches) and decoder steps give identical logits across KV slides,
    with lanes of different lengths (one empty), different batch sizes and lane groupings."""
    m = session.model
    lanes = [tokens[0:150], tokens[150:290], tokens[290:350], tokens[350:350]]
    w = Window(64, 4, 16)
    results = []
    for nb, n_seq in ((256, 4), (17, 4)):
        got = {l: [] for l in range(4)}
        with LlamaContext(m, n_seq=n_seq, n_ctx_seq=64, n_batch=nb, attention=att) as ctx:
            encode_lanes(ctx, lanes, m.bos, w, lambda l, t0, lg: got[l].append(lg.copy()))
        results.append({l: np.concatenate(v) for l, v in got.items() if v})
    dec = {l: [] for l in range(4)}

    def choose(l, lg):
        dec[l].append(lg.copy())
        return int(lanes[l][len(dec[l]) - 1])

    with LlamaContext(m, n_seq=4, n_ctx_seq=64, n_batch=8, attention=att) as ctx:
        out = decode_lanes(ctx, [len(x) for x in lanes], m.bos, w, choose)
    for l in range(3):
        d = np.stack(dec[l])
        for r in results:
            assert np.array_equal(r[l], d), f"lane {l}: max |diff| {np.abs(r[l] - d).max()}"
        assert np.array_equal(out[l], lanes[l])
    assert len(out[3]) == 0
    # lane 1 alone in its own context (another worker) sees the same logits
    alone = []
    with LlamaContext(m, n_seq=1, n_ctx_seq=64, n_batch=64, attention=att) as ctx:
        encode_lanes(ctx, [lanes[1]], m.bos, w, lambda l, t0, lg: alone.append(lg.copy()))
    assert np.array_equal(np.concatenate(alone), results[0][1])


def test_contexts_past_512_cells(session, att):
    """Past 512 cells llama.cpp switches single-row f16 attention to a split-KV kernel whose
    result depends on the thread count; no mode a stream may name may do that."""
    m = session.model
    toks = m.tokenize(corpus("canterbury/alice29.txt")[:4000])
    seq = np.concatenate([[m.bos], toks[:599]]).astype(np.int32)
    with LlamaContext(m, n_seq=1, n_ctx_seq=768, n_batch=256, n_threads=2, attention=att) as ctx:
        ref = _one_by_one(ctx, seq)
    with LlamaContext(m, n_seq=1, n_ctx_seq=768, n_batch=256, n_threads=1, attention=att) as ctx:
        batched = ctx.prefill(seq, 256)
    assert np.array_equal(ref, batched), f"max |diff| {np.abs(ref - batched).max()}"
