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


def invariance(m, att, n=160) -> dict:
    toks = m.tokenize((find_corpora() / "canterbury/alice29.txt").read_bytes()[:3000])
    seq = np.concatenate([[m.bos], toks[:n - 1]]).astype(np.int32)
    out = {}
    with M.LlamaContext(m, n_seq=1, n_ctx_seq=256, n_batch=128, attention=att) as ctx:
        one = ctx.prefill(seq, 1)
        ctx.clear()
        full = ctx.prefill(seq, 128)
    out["token_by_token_equals_batched"] = bool(np.array_equal(one, full))
    out["max_abs_diff"] = float(np.abs(one - full).max())
    with M.LlamaContext(m, n_seq=4, n_ctx_seq=256, n_batch=128, attention=att) as ctx:
        rows = [ctx.decode(np.full(4, seq[i], np.int32), np.full(4, i, np.int32), np.arange(4, dtype=np.int32)).copy()
                for i in range(n)]
    out["lanes_equal_single"] = all(np.array_equal(np.stack([r[s] for r in rows]), one) for s in range(4))
    return out


def throughput(m, att, lanes_list=(1, 2, 4, 8, 16, 32, 64), steps=96) -> list:
    toks = m.tokenize((find_corpora() / "enwik/enwik6").read_bytes()[:400000])
    res = []
    w = Window(1024, 4, 256)
    for L in lanes_list:
        lanes = [toks[i * steps:(i + 1) * steps] for i in range(L)]
        with M.LlamaContext(m, n_seq=L, n_ctx_seq=1024, n_batch=max(L, 256), attention=att) as ctx:
            t0 = time.perf_counter()
            decode_lanes(ctx, [steps] * L, m.bos, w, lambda l, lg: int(lanes[l][0]))
            dt = time.perf_counter() - t0
        res.append(dict(lanes=L, tokens_per_s=round(L * steps / dt, 1)))
        print(res[-1], flush=True)
    return res


def round_trip(gpu: bool) -> dict:
    """The real codec on the GPU: encode (the decoder's schedule, ``llm_frame.exact_schedule``),
    decode, bytes identical; 1 lane and 4 lanes."""
    from nacrith.decoder import decompress
    from nacrith.policy import compress
    from nacrith.session import Options, Session

    data = (find_corpora() / "canterbury/alice29.txt").read_bytes()[:6000]
    out = {}
    with Session(workers=1, gpu_layers=-1 if gpu else 0) as s:
        for lanes in (1, 4):
            opts = Options(min_lane_tokens=10 ** 6 if lanes == 1 else 300, max_lanes=lanes)
            t0 = time.perf_counter()
            blob = compress(data, s, opts)
            t1 = time.perf_counter()
            ok = decompress(blob, s) == data
            out[f"lanes{lanes}"] = dict(identical=ok, bpb=round(8 * len(blob) / len(data), 4),
                                        compress_s=round(t1 - t0, 2), decompress_s=round(time.perf_counter() - t1, 2))
            print(out, flush=True)
    return out


def main():
    L = M.llama()
    gpu = bool(L.llama_supports_gpu_offload())
    m = M.Model(n_gpu_layers=-1 if gpu else 0)
    report = dict(gpu_offload=gpu, system_info=L.llama_print_system_info().decode())
    for att in M.ATTENTION_MODES.values():
        if M.available(att):
            report[f"invariance_{att.name}"] = invariance(m, att)
            print(report, flush=True)
    report["round_trip"] = round_trip(gpu)
    report["throughput"] = throughput(m, M.default_attention(gpu))
    out = ROOT / "bench" / "results" / "gpu_check.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
