"""The device half of the GPU check (``bench/gpu/run.sh check``): what runs on a lent GPU machine in
one call, writing ``gpu_check.json`` and the streams it made to ``--out``.

1. the build: llama.cpp's system info, GPU offload, the GPUs it sees, the fingerprint of a GPU
   stream;
2. round trips on the GPU (all layers; the lockstep schedule, recorded): alice29.txt and the first
   1 MB of enwik (``--data`` holds them), bytes identical, bpb and tokens/s; the same stream
   decoded twice, identical;
3. tokens/s of the decoder's schedule for 1, 8, 64 and 256 lanes (raw steps, 1024-token window);
4. the cross-machine check: a stream made on the bundling machine's CPU decoded by this
   machine's CPU build, and a stream made here on the CPU written to ``--out`` for the reverse.

``--budget`` seconds bound the optional parts (the 1 MB round trip, the 256-lane row): what would
not fit is skipped and said so. ``--cpu`` rehearses it all on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))  # after the installed wheel (PYTHONPATH): its native core is built for this Python


def log(report: dict, key: str, value) -> None:
    report[key] = value
    print(json.dumps({key: value}), flush=True)


def round_trip(session, data: bytes, opts, name: str) -> dict:
    from bench.common import timed_round_trip
    from nacrith.format import StreamParser

    r = timed_round_trip(session, data, opts, name, strict=False)
    p = StreamParser(r["blob"])
    list(p)
    tokens = r["tokens"]
    return dict(file=name, bytes=len(data), identical=r["identical"], bpb=round(r["bpb"], 4),
                tokens=tokens, lockstep_tokens=r["stats"].get("lockstep_tokens", 0),
                schedule=p.header.params.schedule if p.header.params else None,
                compress_tok_s=round(tokens / r["compress_s"], 1), decompress_tok_s=round(tokens / r["decompress_s"], 1),
                _blob=r["blob"])


def lane_rates(model, attention, lanes_list, budget_end: float, steps: int = 64) -> list:
    """Tokens/s of one token per lane per step for each lane count (as a decoder runs)."""
    import numpy as np

    from nacrith.lanes import decode_lanes
    from nacrith.model import LlamaContext
    from nacrith.params import Window

    toks = model.tokenize(b"The quick brown fox jumps over the lazy dog. " * 400)
    out = []
    for n in lanes_list:
        if time.monotonic() > budget_end:
            out.append(dict(lanes=n, skipped="over the time budget"))
            continue
        lanes = [np.roll(toks, i)[:steps] for i in range(n)]
        with LlamaContext(model, n_seq=n, n_ctx_seq=1024, n_batch=max(n, 8), attention=attention) as ctx:
            t0 = time.perf_counter()
            decode_lanes(ctx, [steps] * n, model.bos, Window(1024, 4, 256), lambda lane, lg: 0)
            dt = time.perf_counter() - t0
        out.append(dict(lanes=n, steps=steps, tokens_per_s=round(n * steps / dt, 1)))
        print(json.dumps(out[-1]), flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", required=True, help="folder with alice29.txt, enwik_1mb, alice8k.txt(.cpu.nc)")
    ap.add_argument("--budget", type=float, default=300.0)
    ap.add_argument("--cpu", action="store_true", help="rehearsal without a GPU")
    args = ap.parse_args(argv)
    t_start = time.monotonic()
    budget_end = t_start + args.budget
    out, data = Path(args.out), Path(args.data)
    out.mkdir(parents=True, exist_ok=True)

    from nacrith.backend import fingerprint, supports_gpu_offload, system_info
    from nacrith.model import default_attention
    from nacrith.options import Options
    from nacrith.runtime import gpu_devices
    from nacrith.session import Session

    report: dict = {}
    gpu = supports_gpu_offload() and not args.cpu
    log(report, "system_info", system_info())
    log(report, "gpu_offload", gpu)
    log(report, "gpus", gpu_devices())
    layers = -1 if gpu else 0
    with Session(workers=1, gpu_layers=layers) as s:
        att = default_attention(gpu)
        log(report, "fingerprint", fingerprint(None, att, s.model.kernel_record, gpu=gpu))
        opts = s.resolve(Options())
        log(report, "schedule", opts.schedule)
        alice = (data / "alice29.txt").read_bytes()
        name = "alice29.txt"
        if args.cpu:  # the rehearsal checks the path, not the rates: a one-lane prefix is enough
            alice, name = alice[:16384], "alice29.txt[:16384] (CPU rehearsal)"
        r = round_trip(s, alice, Options(), name)
        blob = r.pop("_blob")
        (out / "alice29.gpu.nc").write_bytes(blob)
        log(report, "round_trip_alice29", r)
        from nacrith.decoder import decompress

        t0 = time.perf_counter()
        again = decompress(blob, s)
        log(report, "decoded_twice_identical", dict(identical=again == alice, seconds=round(time.perf_counter() - t0, 1)))
        enwik = (data / "enwik_1mb").read_bytes()
        # 1 MB at alice29's rate (one frame of 8 lanes there: 64 lanes are faster), both ways,
        # must fit in what is left of the budget
        alice_s = r["tokens"] / max(1e-3, r["compress_tok_s"]) + r["tokens"] / max(1e-3, r["decompress_tok_s"])
        need = alice_s * len(enwik) / len(alice)
        if time.monotonic() + need < budget_end:
            r = round_trip(s, enwik, Options(max_lanes=64, min_lane_tokens=512), "enwik 1 MB, 64 lanes")
            r.pop("_blob")
            log(report, "round_trip_enwik_1mb", r)
        else:
            log(report, "round_trip_enwik_1mb", dict(skipped=f"needs ~{need:.0f} s, over the time budget"))
        log(report, "lanes", lane_rates(s.model, att, (1, 8, 64, 256), budget_end))
    # the cross-machine check, on this machine's CPU build (no layer, no operation on a GPU)
    with Session(workers=1, gpu_layers=0) as cpu:
        made_there = (data / "alice8k.txt.cpu.nc").read_bytes()
        original = (data / "alice8k.txt").read_bytes()
        ok = decompress(made_there, cpu) == original
        log(report, "cpu_stream_from_the_bundling_machine_decodes_here", ok)
        from nacrith.policy import compress

        mine = compress(original, cpu, Options())
        (out / "alice8k.txt.device-cpu.nc").write_bytes(mine)
        log(report, "cpu_stream_made_here_identical_to_the_bundling_machines", mine == made_there)
    log(report, "seconds", round(time.monotonic() - t_start, 1))
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
