"""The speed reference every nacrith rate is divided by: stock llama.cpp prefill of the same tokens.

    .venv/bin/python bench/reference.py [FILE] [--bytes N] [--threads T] [--batch B]

llama.cpp's own default context settings (flash attention auto, f16 K and V cache), the text's
tokens cut into 1024-token windows, each evaluated from an empty KV cache in 512-token batches
with logits for every token (what a compressor needs), then the same with the last logits only.
It uses the same ``llama_model`` (the same weights in memory) as nacrith, so the ratio
``nacrith tokens/s / reference tokens/s`` measured in one sitting cancels the machine's drift.
Stock means llama.cpp's own kernels: nacrith's tiled weight products (same bits, faster) are
turned off while the reference runs. ``--batch 1`` times stock token-by-token evaluation instead (llama.cpp's generation loop): what a
one-lane decoder without drafts, one token per ``llama_decode``, can at best reach.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nacrith.model import Model, default_threads, llama, set_invariant_products, set_matmul_kernel  # noqa: E402


def stock_prefill(model: Model, tokens: np.ndarray, threads: int | None = None, window: int = 1024,
                  batch: int = 512, logits_all: bool = True, tiled: bool = False) -> dict:
    """Time stock llama.cpp prefill of ``tokens`` (int32 array); ``tiled``: with nacrith's tiled
    weight products instead of llama.cpp's own (what the same settings reach on nacrith's build).

    Returns dict(tokens, seconds, tok_s, settings) with tok_s in tokens per second.
    """
    was = set_matmul_kernel(tiled)  # False: llama.cpp's own weight products (nacrith-mm.patch off)
    inv = set_invariant_products(tiled)  # and its own routing of the other weight types
    try:
        r = _timed_prefill(model, tokens, threads, window, batch, logits_all)
        if tiled:
            r["settings"] += ", nacrith-mm weight products"
        return r
    finally:
        set_matmul_kernel(was)
        set_invariant_products(inv)


def _timed_prefill(model: Model, tokens: np.ndarray, threads: int | None, window: int, batch: int, logits_all: bool) -> dict:
    L = llama()
    cp = L.llama_context_default_params()  # flash attention auto, f16 K and V
    cp.n_ctx = window
    cp.n_batch = cp.n_ubatch = batch
    cp.n_seq_max = 1
    t = int(threads or default_threads())
    cp.n_threads = cp.n_threads_batch = t
    cp.no_perf = True
    ctx = L.llama_init_from_model(model._model, cp)
    if not ctx:
        raise RuntimeError("llama.cpp could not create the reference context")
    mem = L.llama_get_memory(ctx)
    b = L.llama_batch_init(batch, 0, 1)
    try:
        n_tok = len(tokens)
        t0 = time.perf_counter()
        for w0 in range(0, n_tok, window):
            L.llama_memory_clear(mem, True)
            win = tokens[w0:w0 + window]
            for b0 in range(0, len(win), batch):
                piece = win[b0:b0 + batch]
                n = len(piece)
                for i in range(n):
                    b.token[i] = int(piece[i])
                    b.pos[i] = b0 + i
                    b.n_seq_id[i] = 1
                    b.seq_id[i][0] = 0
                    b.logits[i] = 1 if logits_all or i == n - 1 else 0
                b.n_tokens = n
                rc = L.llama_decode(ctx, b)
                if rc != 0:
                    raise RuntimeError(f"llama_decode failed ({rc})")
        dt = time.perf_counter() - t0
    finally:
        L.llama_batch_free(b)
        L.llama_free(ctx)
    return dict(tokens=n_tok, seconds=round(dt, 2), tok_s=round(n_tok / dt, 1),
                settings=f"stock: fa auto, f16 KV, window {window}, batch {batch}, "
                         f"{'all' if logits_all else 'last'} logits, {t} threads")


def main() -> None:
    import click

    from bench.common import find_corpora

    @click.command()
    @click.argument("path", required=False)
    @click.option("--bytes", "nbytes", type=int, default=None, help="Prefix of FILE (default: all).")
    @click.option("--threads", type=int, default=None)
    @click.option("--batch", type=int, default=512, show_default=True, help="Tokens per llama_decode.")
    def cli(path, nbytes, threads, batch):
        src = Path(path) if path else find_corpora() / "canterbury" / "alice29.txt"
        data = src.read_bytes()[:nbytes]
        m = Model()
        toks = m.tokenize(data)
        for all_logits in (True, False):
            r = stock_prefill(m, toks, threads, batch=batch, logits_all=all_logits)
            print(f"{src.name} {len(data)} B: {r}")

    cli()


if __name__ == "__main__":
    main()
