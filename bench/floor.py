"""The physical floor of a decode step on this machine: memory bandwidth (the weights and the KV
cache stream from memory once per step) and the cores' FMA rate (attention's multiply-adds).

    .venv/bin/python -m bench floor [--threads 2]

Measured, not assumed: bandwidth as bytes read per second by ``threads`` threads each summing its
own slice of a 512 MiB float32 array (numpy releases the GIL; the best of five passes), FMA rate
as a matrix product of in-cache float32 blocks (numpy's BLAS, ``threads`` threads, 2 flops per
multiply-add). For the default model: the weights' bytes per token (the GGUF's tensor bytes) over
the bandwidth, and per cached position the KV bytes (f16 K + bf16 V: 2 x 2 bytes x head size x KV
heads x layers) over the bandwidth and attention's multiply-adds (2 x head size x query heads x
layers) over the FMA rate. Rows: ``bench/results/floor.jsonl``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import append_row, cpu_model  # noqa: E402

OUT = ROOT / "bench" / "results" / "floor.jsonl"


def bandwidth(threads: int, mib: int = 512) -> float:
    import numpy as np

    a = np.ones(mib * (1 << 20) // 4, np.float32)
    parts = np.array_split(a, threads)
    best = 0.0
    for _ in range(5):
        ts = [threading.Thread(target=np.add.reduce, args=(p,)) for p in parts]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        best = max(best, a.nbytes / (time.perf_counter() - t0))
    return best


def fma_rate(threads: int) -> float:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    import numpy as np

    n = 512
    a = np.random.default_rng(0).random((n, n), np.float32)
    b = np.random.default_rng(1).random((n, n), np.float32)
    a @ b
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        best = max(best, 10 * n * n * n / (time.perf_counter() - t0))  # multiply-adds per second
    return best


def main(argv: list[str]) -> int:
    threads = int(argv[argv.index("--threads") + 1]) if "--threads" in argv else 2
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    bw = bandwidth(threads)
    fma = fma_rate(threads)
    from nacrith.model import Model

    with Model() as m:
        weights = m.path.stat().st_size - 4 * m.n_vocab  # about: the file is the tensors and the vocabulary
        import llama_cpp as L

        layers = L.llama_model_n_layer(m._model)
        heads = L.llama_model_n_head(m._model)
        kv_heads = L.llama_model_n_head_kv(m._model)
        d = L.llama_model_n_embd(m._model) // heads
    kv_bytes = 2 * 2 * d * kv_heads * layers
    attn_fma = 2 * d * heads * layers
    row = dict(threads=threads, bandwidth_gb_s=round(bw / 1e9, 2), fma_g_s=round(fma / 1e9, 1),
               model=m.path.name, weight_bytes=weights, weights_floor_ms_per_token=round(1e3 * weights / bw, 2),
               kv_bytes_per_position=kv_bytes, attention_fma_per_position=attn_fma,
               attention_floor_us_per_position=round(1e6 * max(kv_bytes / bw, attn_fma / fma), 3),
               attention_memory_floor_us=round(1e6 * kv_bytes / bw, 3),
               attention_compute_floor_us=round(1e6 * attn_fma / fma, 3),
               cpu=cpu_model(), date=time.strftime("%Y-%m-%d"))
    append_row(OUT, row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
