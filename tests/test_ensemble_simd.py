"""The AVX2 kernels (native/simd.c) give bit-identical results to the scalar reference loops.

A file made on a machine with AVX2 must decode on one without it, so every path that feeds a CDF
is run twice, with ``_testing.set_simd(False)`` and ``set_simd(True)``, and compared byte for byte.
"""

import numpy as np
import pytest

from nacrith import _native
from nacrith._native import _testing
from nacrith.params import LLM_ONLY, MIXER_GEOMETRIC, MIXER_LINEAR, EnsembleParams
from nacrith.ensemble import lane_model

HAVE_SIMD = _testing.set_simd(True)
pytestmark = pytest.mark.skipif(not HAVE_SIMD, reason="this CPU has no AVX2: only the scalar path exists")


@pytest.fixture(autouse=True)
def _restore_simd():
    yield
    _testing.set_simd(True)


def both(fn):
    """fn() with the scalar loops, then with AVX2."""
    _testing.set_simd(False)
    a = fn()
    assert _testing.set_simd(True)
    return a, fn()


def logits_rows(rng, rows, n):
    z = (rng.standard_normal((rows, n)) * rng.uniform(0.5, 6.0, (rows, 1))).astype(np.float32)
    z[:, rng.integers(0, n, 3)] += 12.0  # peaked rows
    z.flat[rng.integers(0, z.size, 5)] = -0.0
    z.flat[rng.integers(0, z.size, 5)] = -1e30  # far below the exp cut-off
    if n > 200:
        z[0, 37:200] = -1e30  # a run of whole 16-value blocks below it (the AVX2 pass skips them)
    if rows > 1:
        z[1, :] = 0.0  # all ties
        z[1, n // 2] = -0.0
    return z


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 49152, 49155])
def test_cdf_from_logits_and_softmax_identical(n):
    rng = np.random.default_rng(n)
    z = logits_rows(rng, 3, n)

    def run():
        cdfs = []
        for row in z:
            c = np.zeros(n + 1, np.uint32)
            _native.cdf_from_logits(row, c)
            cdfs.append(c)
        out = np.zeros(z.shape, np.float64)
        _native.softmax(z, out)
        return np.concatenate(cdfs).tobytes() + out.tobytes()

    a, b = both(run)
    assert a == b


@pytest.mark.parametrize("n", [7, 4096, 49152])
def test_cdf_from_probs_identical(n):
    rng = np.random.default_rng(n + 1)
    p = rng.random(n) ** 8
    p[rng.integers(0, n, 4)] = 0.0
    p[0] = np.nan  # counts as 0: the floor count
    p[-1] = 1e-300

    def run():
        c = np.zeros(n + 1, np.uint32)
        _native.cdf_from_probs(p, c)
        return c.tobytes()

    a, b = both(run)
    assert a == b


CONFIGS = {
    "llm only": LLM_ONLY,
    "bias": EnsembleParams(ngram_order=0, mixer=MIXER_LINEAR),
    "linear": EnsembleParams(mixer=MIXER_LINEAR, ngram_bits=8),
    "geometric": EnsembleParams(mixer=MIXER_GEOMETRIC, ngram_bits=8),
    "geometric no bias": EnsembleParams(mixer=MIXER_GEOMETRIC, bias_lr=0.0, ngram_bits=8),
    "skip": EnsembleParams(skip_bits=2.0, ngram_bits=8),
    "match": EnsembleParams(ngram_bits=8, match_min=3, match_bits=10, match_lr=0.1),
    "match llm only": EnsembleParams(ngram_order=0, bias_lr=0.0, mixer=MIXER_LINEAR, skip_bits=0.0,
                                     match_min=2, match_bits=8, match_lr=0.3),
    "match skip": EnsembleParams(skip_bits=2.0, ngram_bits=8, match_min=4, match_bits=9),
}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("n", [61, 4099])
def test_lane_model_streams_identical(name, n):
    """Encode a repetitive token stream (so the n-gram head matches and the skip fires) with
    every head configuration; the coded bytes and the decoded tokens agree across the paths."""
    rng = np.random.default_rng(7)
    T = 300
    toks = np.tile(rng.integers(0, n, 25), T // 25 + 1)[:T].astype(np.int32)
    z = logits_rows(rng, T, n)
    params = CONFIGS[name]

    def run():
        m = lane_model(params, n)
        enc = _native.Encoder()
        for t in range(T):
            m.prepare()
            enc.encode_step(m, None if m.prepare() else z[t:t + 1], int(toks[t]), b"\xff" if t == 40 else b"")
        data = enc.finish()
        d = lane_model(params, n)
        dec = _native.Decoder(data)
        out = []
        for t in range(T):
            skip = d.prepare()
            while True:
                y = dec.decode_step(d, None if skip else z[t:t + 1])
                if isinstance(y, int):
                    break
            out.append(y)
        assert out == toks.tolist()
        return data + repr(m.weights).encode()

    a, b = both(run)
    assert a == b


@pytest.mark.parametrize("n", [61, 4099])
def test_shared_lane_match_streams_identical(n):
    """Lanes sharing heads with the match model (matches across lanes), coded in the frame's
    order: identical bytes with the scalar and AVX2 loops."""
    from nacrith.ensemble import lane_models

    rng = np.random.default_rng(n)
    T, L = 200, 3
    block = rng.integers(0, n, 60)
    toks = [np.concatenate([rng.integers(0, n, 20 + 7 * i), block, block])[:T].astype(np.int32) for i in range(L)]
    z = [logits_rows(rng, len(x), n) for x in toks]
    params = EnsembleParams(ngram_bits=8, match_min=3, match_bits=10, match_lr=0.1)

    def run():
        models = lane_models(params, n, L)
        encs = [_native.Encoder() for _ in range(L)]
        for t in range(max(map(len, toks))):
            active = [i for i in range(L) if t < len(toks[i])]
            for i in active:
                models[i].prepare()
            for i in active:
                encs[i].encode_step(models[i], z[i][t:t + 1], int(toks[i][t]))
        return b"".join(e.finish() for e in encs) + repr([m.match for m in models]).encode()

    a, b = both(run)
    assert a == b
