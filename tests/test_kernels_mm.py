"""nacrith's tiled weight products (native/llama/nacrith-mm.patch): the same bits as llama.cpp's
own ``ggml_vec_dot_q4_1_q8_1`` (the model's Q4_1 weights) and ``ggml_vec_dot_q8_0_q8_0`` (its Q8_0
output layer), on random blocks (every tile shape) and on the real model (logits with the kernels
on and off), so no stream depends on which ran."""

from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest

from nacrith.model import FAST_ATTENTION, LlamaContext, ggml_cpu_library, matmul_kernel, set_matmul_kernel

from .conftest import corpus

pytestmark = pytest.mark.skipif(os.environ.get("NACRITH_STOCK_LLAMA") == "1",
                                reason="stock llama.cpp build requested")

Q4_1 = np.dtype([("d", "<u2"), ("m", "<u2"), ("qs", "u1", 16)])  # block_q4_1: 32 weights
Q8_1 = np.dtype([("d", "<u2"), ("s", "<u2"), ("qs", "i1", 32)])  # block_q8_1: 32 activations
Q8_0 = np.dtype([("d", "<u2"), ("qs", "i1", 32)])  # block_q8_0: 32 weights or activations


def _half_bits(rng, n, lo, hi, sign=False):
    """uint16 bit patterns of fp16 values with magnitudes log-uniform in [lo, hi]."""
    v = np.exp(rng.uniform(np.log(lo), np.log(hi), n)).astype(np.float16)
    if sign:
        v = v * rng.choice(np.array([-1, 1], np.float16), n)
    return v.view(np.uint16)


def _blocks(rng, rows, nb):
    w = np.zeros((rows, nb), Q4_1)
    w["d"] = _half_bits(rng, rows * nb, 1e-5, 0.5).reshape(rows, nb)
    w["m"] = _half_bits(rng, rows * nb, 1e-5, 1.0, sign=True).reshape(rows, nb)
    w["qs"] = rng.integers(0, 256, (rows, nb, 16))
    return w


def _acts(rng, cols, nb):
    a = np.zeros((cols, nb), Q8_1)
    a["d"] = _half_bits(rng, cols * nb, 1e-6, 2.0).reshape(cols, nb)
    a["s"] = _half_bits(rng, cols * nb, 1e-4, 60000.0, sign=True).reshape(cols, nb)
    a["qs"] = rng.integers(-127, 128, (cols, nb, 32))
    return a


def _q8_0(rng, rows, nb, lo, hi):
    b = np.zeros((rows, nb), Q8_0)
    b["d"] = _half_bits(rng, rows * nb, lo, hi).reshape(rows, nb)
    b["qs"] = rng.integers(-127, 128, (rows, nb, 32))
    return b


def _check_tiles(ref_dot, tile, w, a, n):
    """Every tile shape (1..9 rows x 1..4 columns) of ``tile`` against ``ref_dot`` bit for bit."""
    rows, cols = len(w), len(a)
    ref = np.zeros((cols, rows), np.float32)
    for c in range(cols):
        for r in range(rows):
            ref_dot(n, ref[c, r:].ctypes.data, 0, w[r].ctypes.data, 0, a[c].ctypes.data, 0, 1)
    assert np.isfinite(ref).all() and len(np.unique(ref)) == ref.size
    for nr in range(1, rows + 1):
        for nc in range(1, cols + 1):
            out = np.full((cols, rows), np.nan, np.float32)
            ys = (ctypes.c_void_p * 4)(*[a[c].ctypes.data for c in range(cols)])
            outs = (ctypes.c_void_p * 4)(*[out[c].ctypes.data for c in range(cols)])
            assert tile(n, nr, nc, w.ctypes.data, w.strides[0], ys, outs) == 1
            got = out[:nc, :nr]
            assert np.array_equal(got.view(np.uint32), ref[:nc, :nr].view(np.uint32)), (
                f"{nr} x {nc} tile, {n // 32} blocks: max |diff| {np.abs(got - ref[:nc, :nr]).max()}")
            assert np.isnan(out[nc:]).all() and np.isnan(out[:, nr:]).all(), "wrote outside its tile"


@pytest.fixture(scope="module")
def lib():
    lib = ggml_cpu_library()
    assert matmul_kernel() == "nacrith-mm-2", "llama.cpp was built without native/llama/nacrith-mm.patch"
    lib.ggml_vec_dot_q4_1_q8_1.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                           ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    lib.ggml_vec_dot_q4_1_q8_1.restype = None
    lib.ggml_nacrith_vec_dot_q4_1_q8_1_tile.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                                                        ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
    lib.ggml_nacrith_vec_dot_q4_1_q8_1_tile.restype = ctypes.c_int
    lib.ggml_vec_dot_q8_0_q8_0.argtypes = lib.ggml_vec_dot_q4_1_q8_1.argtypes
    lib.ggml_vec_dot_q8_0_q8_0.restype = None
    lib.ggml_nacrith_vec_dot_q8_0_q8_0_tile.argtypes = lib.ggml_nacrith_vec_dot_q4_1_q8_1_tile.argtypes
    lib.ggml_nacrith_vec_dot_q8_0_q8_0_tile.restype = ctypes.c_int
    return lib


@pytest.mark.parametrize("nb", [1, 18, 48, 256])
def test_every_q4_1_tile_shape_gives_the_bits_of_llama_cpp_vec_dot(lib, nb):
    rng = np.random.default_rng(nb)
    _check_tiles(lib.ggml_vec_dot_q4_1_q8_1, lib.ggml_nacrith_vec_dot_q4_1_q8_1_tile,
                 _blocks(rng, 9, nb), _acts(rng, 4, nb), 32 * nb)


@pytest.mark.parametrize("nb", [1, 18, 48, 256])
def test_every_q8_0_tile_shape_gives_the_bits_of_llama_cpp_vec_dot(lib, nb):
    """The output layer's kernel (Q8_0 weights; llamafile's tinyBLAS gives these bits too, which
    is why the stock encoder's batches and the one-lane decoder already agreed)."""
    rng = np.random.default_rng(100 + nb)
    _check_tiles(lib.ggml_vec_dot_q8_0_q8_0, lib.ggml_nacrith_vec_dot_q8_0_q8_0_tile,
                 _q8_0(rng, 9, nb, 1e-5, 0.05), _q8_0(rng, 4, nb, 1e-4, 1.0), 32 * nb)


def test_the_tile_kernel_refuses_what_it_cannot_compute(lib):
    a = _acts(np.random.default_rng(0), 1, 257)
    w = _blocks(np.random.default_rng(1), 1, 257)
    out = np.zeros(1, np.float32)
    ys = (ctypes.c_void_p * 1)(a.ctypes.data)
    outs = (ctypes.c_void_p * 1)(out.ctypes.data)
    assert lib.ggml_nacrith_vec_dot_q4_1_q8_1_tile(32 * 257, 1, 1, w.ctypes.data, w.strides[0], ys, outs) == 0
    assert lib.ggml_nacrith_vec_dot_q4_1_q8_1_tile(32, 1, 5, w.ctypes.data, w.strides[0], ys, outs) == 0
    q = _q8_0(np.random.default_rng(2), 1, 257, 1e-3, 1.0)
    ys = (ctypes.c_void_p * 1)(q.ctypes.data)
    assert lib.ggml_nacrith_vec_dot_q8_0_q8_0_tile(32 * 257, 1, 1, q.ctypes.data, q.strides[0], ys, outs) == 0


def test_model_logits_are_the_same_bits_with_the_kernel_on_and_off(session, lib):
    """A batch of 96 tokens (every Q4_1 product tiled; the Q8_0 output layer's 96 columns go to
    llamafile's tinyBLAS), 5 lanes per step (Q4_1 and Q8_0 tiles of 3 + 2 columns) and one token
    per step (Q4_1 through nacrith's one-column kernel, Q8_0 through llama.cpp's own loop): the
    kernels engage where they should and change no bit."""
    lib.ggml_cpu_nacrith_mm_chunks.argtypes = [ctypes.c_int]
    lib.ggml_cpu_nacrith_mm_chunks.restype = ctypes.c_int
    m = session.model
    toks = m.tokenize(corpus("canterbury/alice29.txt")[:2000])
    seq = np.concatenate([[m.bos], toks[:95]]).astype(np.int32)
    lanes = toks[:5 * 12].reshape(5, 12)

    def chunks():
        return np.array([lib.ggml_cpu_nacrith_mm_chunks(t) for t in (3, 8)])  # GGML_TYPE_Q4_1, GGML_TYPE_Q8_0

    def run():
        with LlamaContext(m, n_seq=5, n_ctx_seq=256, n_batch=128, attention=FAST_ATTENTION) as ctx:
            c0 = chunks()
            batch = ctx.prefill(seq)
            c1 = chunks()
            ctx.clear()
            steps = np.stack([ctx.decode(lanes[:, i], np.full(5, i, np.int32), np.arange(5, dtype=np.int32)).copy()
                              for i in range(12)])
            c2 = chunks()
            ctx.clear()
            single = ctx.prefill(seq[:8], 1)
            c3 = chunks()
        return (batch, steps, single), (c1 - c0, c2 - c1, c3 - c2)

    was = set_matmul_kernel(False)
    try:
        off, off_chunks = run()
        set_matmul_kernel(True)
        on, on_chunks = run()
    finally:
        set_matmul_kernel(was)
    assert all((c == 0).all() for c in off_chunks)
    (q4_batch, q8_batch), (q4_steps, q8_steps), single = on_chunks
    assert q4_batch > 0 and q8_batch == 0, on_chunks
    assert q4_steps > 0 and q8_steps > 0, on_chunks
    assert single[0] > 0 and single[1] == 0, f"one column: Q4_1 one-column kernel, Q8_0 llama.cpp's loop {single}"
    for name, a, b in zip(("batch", "5 lanes", "one token"), off, on):
        assert np.array_equal(a, b), f"{name}: max |diff| {np.abs(a - b).max()}"


@pytest.mark.parametrize("qtype", ["F16", "F32"])
def test_other_weight_types_are_batch_invariant_only_with_nacrith_mm_2(qtype):
    """nacrith-mm-2 routes products of several columns of every other weight type (F16, F32,
    K-quants, Q5_0, ...) through llama.cpp's per-element vec_dot loop: a copy of the default model
    in ``qtype`` then gives a token the same logits in a 96-token batch as alone. With the routing
    off (stock llama.cpp: llamafile's sgemm for batches) they differ: the kernel, not luck, makes
    the difference, and its chunk counter shows it ran."""
    from bench.modelfiles import copy_as, default_model
    from nacrith.model import Model, invariant_products, matmul_chunks, set_invariant_products

    assert matmul_kernel() == "nacrith-mm-2" and invariant_products()
    with Model(copy_as(default_model(), qtype)) as m:
        assert m.weight_types == {qtype} and m.kernel_record == " mm=nacrith-mm-2"
        toks = m.tokenize(corpus("canterbury/alice29.txt")[:1500])
        seq = np.concatenate([[m.bos], toks[:95]]).astype(np.int32)

        def run():
            with LlamaContext(m, n_seq=1, n_ctx_seq=256, n_batch=128, n_threads=2, attention=FAST_ATTENTION) as ctx:
                c0 = matmul_chunks("invariant")
                batch = ctx.prefill(seq)
                c1 = matmul_chunks("invariant")
                ctx.clear()
                single = ctx.prefill(seq, 1)
            return batch, single, c1 - c0

        batch, single, used = run()
        assert used > 0
        assert np.array_equal(batch, single), f"max |diff| {np.abs(batch - single).max()}"
        was = set_invariant_products(False)
        try:
            batch, single, used = run()
        finally:
            set_invariant_products(was)
        assert used == 0 and not np.array_equal(batch, single)
