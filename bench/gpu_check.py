"""GPU half of bench/gpu_check.sh: batch invariance of GPU logits and tokens/s per lane count."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import find_corpora  # noqa: E402
from nacrith import model as M  # noqa: E402
from nacrith.lanes import decode_lanes  # noqa: E402
from nacrith.params import Window  # noqa: E402


def invariance(m, n=160) -> dict:
    toks = m.tokenize((find_corpora() / "canterbury/alice29.txt").read_bytes()[:3000])
    seq = np.concatenate([[m.bos], toks[:n - 1]]).astype(np.int32)
    out = {}
    with M.LlamaContext(m, n_seq=1, n_ctx_seq=256, n_batch=128) as ctx:
        one = np.concatenate([ctx.decode(seq[i:i + 1], np.array([i], np.int32), np.zeros(1, np.int32)).copy()
                              for i in range(n)])
        ctx.clear()
        full = np.concatenate([ctx.decode(seq[a:a + 128], np.arange(a, min(n, a + 128), dtype=np.int32),
                                          np.zeros(min(128, n - a), np.int32)).copy() for a in range(0, n, 128)])
    out["token_by_token_equals_batched"] = bool(np.array_equal(one, full))
    out["max_abs_diff"] = float(np.abs(one - full).max())
    with M.LlamaContext(m, n_seq=4, n_ctx_seq=256, n_batch=128) as ctx:
        rows = [ctx.decode(np.full(4, seq[i], np.int32), np.full(4, i, np.int32), np.arange(4, dtype=np.int32)).copy()
                for i in range(n)]
    out["lanes_equal_single"] = all(np.array_equal(np.stack([r[s] for r in rows]), one) for s in range(4))
    return out


def throughput(m, lanes_list=(1, 2, 4, 8, 16, 32, 64), steps=96) -> list:
    toks = m.tokenize((find_corpora() / "enwik/enwik6").read_bytes()[:400000])
    res = []
    w = Window(1024, 4, 256)
    for L in lanes_list:
        lanes = [toks[i * steps:(i + 1) * steps] for i in range(L)]
        with M.LlamaContext(m, n_seq=L, n_ctx_seq=1024, n_batch=max(L, 256)) as ctx:
            t0 = time.perf_counter()
            decode_lanes(ctx, [steps] * L, m.bos, w, lambda l, lg: int(lanes[l][0]))
            dt = time.perf_counter() - t0
        res.append(dict(lanes=L, tokens_per_s=round(L * steps / dt, 1)))
        print(res[-1], flush=True)
    return res


def main():
    L = M.llama()
    gpu = bool(L.llama_supports_gpu_offload())
    m = M.Model(n_gpu_layers=-1 if gpu else 0)
    report = dict(gpu_offload=gpu, system_info=L.llama_print_system_info().decode())
    report["invariance_fa_q8_0"] = invariance(m)
    print(report, flush=True)
    if not report["invariance_fa_q8_0"]["token_by_token_equals_batched"]:
        # try other settings: f16 KV cache
        M.KV_TYPE, M.KV_TYPE_NAME = 1, "f16"
        report["invariance_fa_f16"] = invariance(m)
        print(report["invariance_fa_f16"], flush=True)
        M.KV_TYPE, M.KV_TYPE_NAME = 8, "q8_0"
    report["throughput"] = throughput(m)
    out = ROOT / "bench" / "results" / "gpu_check.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
