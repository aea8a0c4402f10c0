"""The native arithmetic coder and CDF construction, against the pure-Python reference."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nacrith import _native
from nacrith._native import _testing
from nacrith.coder import (CDF_TOTAL, Decoder, Encoder, RefDecoder, RefEncoder, cdf_from_logits,
                           cdf_from_probs, softmax)


def _random_cdfs(rng, kind: str, n: int, count: int):
    cdfs, syms, probs = [], [], []
    for _ in range(count):
        if kind == "uniform":
            lg = np.zeros(n, np.float32)
        elif kind == "peaked":  # one symbol with almost all the mass
            lg = np.full(n, -40.0, np.float32)
            lg[rng.integers(n)] = 0.0
        elif kind == "heavy":
            lg = (rng.standard_normal(n) * 6).astype(np.float32)
        else:
            lg = rng.standard_normal(n).astype(np.float32)
        cdf = cdf_from_logits(lg)
        z = lg.astype(np.float64)
        logp = z - (z.max() + np.log(np.exp(z - z.max()).sum()))  # exact log-softmax
        p = np.exp(logp)
        s = int(rng.choice(n, p=p / p.sum())) if kind != "peaked" or rng.random() < 0.8 else int(rng.integers(n))
        cdfs.append(cdf)
        syms.append(s)
        probs.append(logp[s] / np.log(2))
    return cdfs, syms, probs


@pytest.mark.parametrize("kind,n,count", [("uniform", 49152, 200), ("peaked", 49152, 300),
                                          ("heavy", 4096, 400), ("normal", 257, 2000),
                                          ("normal", 2, 3000)])
def test_native_matches_reference_and_ideal(kind, n, count, capsys):
    rng = np.random.default_rng(zlib.crc32(f"{kind}{n}".encode()))
    cdfs, syms, probs = _random_cdfs(rng, kind, n, count)
    enc, ref = Encoder(), RefEncoder()
    for c, s in zip(cdfs, syms):
        enc.encode(c, s)
        ref.encode(c, s)
    data = enc.finish()
    assert data == ref.finish(), "native and reference coders disagree"
    dec, rdec = Decoder(data), RefDecoder(data)
    for c, s in zip(cdfs, syms):
        assert dec.decode(c) == s
        assert rdec.decode(c) == s
    assert dec.overrun == 0
    # code length against the ideal -log2 p (of the exact softmax) and of the quantised CDF
    ideal = -sum(probs)
    quant = -sum(math.log2((int(c[s + 1]) - int(c[s])) / CDF_TOTAL) for c, s in zip(cdfs, syms))
    bits = 8 * len(data)
    over_coder = (bits - quant) / count
    over_total = (bits - ideal) / count
    with capsys.disabled():
        print(f"\n  coder {kind:8} n={n:6}: {count} symbols, ideal {ideal:.1f} bits, coded {bits} bits, "
              f"coder overhead {over_coder:+.5f} bit/sym, incl. quantisation {over_total:+.5f} bit/sym")
    assert bits <= quant + 16 + 0.001 * count  # 2 flush bits + padding, near-exact interval split


def test_cdf_properties_and_overhead_bound():
    rng = np.random.default_rng(1)
    n = 49152
    bound = -math.log2(1 - n / CDF_TOTAL)
    for scale in (0.1, 1, 5, 30, 300):
        lg = (rng.standard_normal(n) * scale).astype(np.float32)
        cdf = cdf_from_logits(lg)
        f = np.diff(cdf.astype(np.int64))
        assert cdf[0] == 0 and cdf[-1] == CDF_TOTAL and f.min() >= 1
        p = softmax(lg)
        assert abs(p.sum() - 1) < 1e-9
        with np.errstate(divide="ignore"):
            loss = np.log2(p) - np.log2(f / CDF_TOTAL)  # extra bits per symbol if coded
        assert loss.max() <= bound + 1e-9, (scale, loss.max(), bound)
    assert bound < 0.01


def test_cdf_degenerate_inputs():
    for lg in (np.full(10, np.nan, np.float32), np.full(10, -np.inf, np.float32),
               np.array([np.inf, 0, 0], np.float32)):
        cdf = cdf_from_logits(lg)
        assert cdf[-1] == CDF_TOTAL and np.diff(cdf.astype(np.int64)).min() >= 1
    cdf = cdf_from_probs(np.array([0.0, -1.0, np.nan, 1e300, 1.0]))
    assert cdf[-1] == CDF_TOTAL and np.diff(cdf.astype(np.int64)).min() >= 1


def test_det_exp_accuracy():
    xs = np.linspace(-32, 0, 20001)
    err = max(abs(_testing.det_exp(float(x)) / math.exp(x) - 1) for x in xs)
    assert err < 2e-10


def test_cdf_is_reproducible_reference_values():
    """Pinned values: a change in the CDF construction changes the bitstream (FORMAT.md)."""
    lg = np.linspace(-20, 5, 1000).astype(np.float32)
    cdf = cdf_from_logits(lg)
    import hashlib
    assert hashlib.sha256(cdf.tobytes()).hexdigest()[:16] == CDF_PIN


CDF_PIN = "c00ef8967617305f"


def test_bad_arguments_raise():
    e = Encoder()
    cdf = cdf_from_logits(np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        e.encode(cdf, 4)
    with pytest.raises(ValueError):
        e.encode(np.array([0, 5, 7], np.uint32), 0)
    with pytest.raises(TypeError):
        e.encode(cdf.astype(np.float64), 0)
    with pytest.raises(TypeError):
        _native.cdf_from_logits(np.zeros(4, np.float64), np.zeros(5, np.uint32))
    zero = np.array([0, 0, CDF_TOTAL], np.uint32)
    with pytest.raises(ValueError):
        e.encode(zero, 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 300), st.integers(0, 2**32 - 1)), min_size=0, max_size=60))
def test_roundtrip_property(items):
    enc, cdfs, syms = Encoder(), [], []
    for n, seed in items:
        rng = np.random.default_rng(seed)
        lg = (rng.standard_normal(n) * rng.uniform(0, 20)).astype(np.float32)
        c = cdf_from_logits(lg)
        s = int(rng.integers(n))
        enc.encode(c, s)
        cdfs.append(c)
        syms.append(s)
    data = enc.finish()
    dec = Decoder(data)
    assert [dec.decode(c) for c in cdfs] == syms
