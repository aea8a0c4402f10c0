"""Per-token cost of the ensemble + CDF + arithmetic coder against the LLM (issue: ensemble).

    .venv/bin/python bench/overhead.py [--bytes 48000] [--configs default,llm-only] [FILE]

Compresses and decompresses a prefix of FILE (default alice29.txt) with 8 lanes and times, inside
the real run, every ``llama_decode`` (``LlamaContext.decode``) and every per-token call of the
lane models (the decoder's ``choose`` and the lock-step encoder's ``on_step``: ensemble heads,
CDF quantisation, arithmetic coding and the Python around them). Everything else (tokenising,
framing, zstd/xz candidates) is reported as "other". Rows go to bench/results/overhead.jsonl and
the Markdown table to bench/results/overhead.md. Run on a quiet machine.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import append_row, find_corpora, read_rows  # noqa: E402
from nacrith import _native, llm_frame  # noqa: E402
from nacrith.options import Options  # noqa: E402
from nacrith.session import Session  # noqa: E402
from nacrith.policy import compress  # noqa: E402
from nacrith.decoder import decompress  # noqa: E402
from nacrith.params import DEFAULT_ENSEMBLE, LLM_ONLY  # noqa: E402
from nacrith.model import LlamaContext  # noqa: E402

OUT = ROOT / "bench" / "results" / "overhead.jsonl"
CONFIGS = {"default": DEFAULT_ENSEMBLE, "llm-only": LLM_ONLY}
T = {"llm": 0.0, "heads": 0.0}


def _timed(fn, key):
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            T[key] += time.perf_counter() - t
    return wrapper


def _install_timers() -> None:
    LlamaContext.decode = _timed(LlamaContext.decode, "llm")
    dec, enc = llm_frame.decode_lanes, llm_frame.encode_lanes_lockstep
    llm_frame.decode_lanes = lambda ctx, lengths, bos, window, choose, needs_llm=None: dec(
        ctx, lengths, bos, window, _timed(choose, "heads"), needs_llm)
    llm_frame.encode_lanes_lockstep = lambda ctx, lanes, bos, window, on_step: enc(
        ctx, lanes, bos, window, _timed(on_step, "heads"))


@click.command()
@click.argument("path", required=False)
@click.option("--bytes", "nbytes", default=48000, show_default=True, help="Prefix of FILE.")
@click.option("--configs", default="default,llm-only", show_default=True)
@click.option("--min-lane-tokens", default=1500, show_default=True,
              help="So that the prefix gets 8 lanes, as a large input does.")
def main(path, nbytes, configs, min_lane_tokens):
    src = Path(path) if path else find_corpora() / "canterbury" / "alice29.txt"
    data = src.read_bytes()[:nbytes]
    _install_timers()
    session = Session()
    for name in configs.split(","):
        opts = Options(ensemble=CONFIGS[name], min_lane_tokens=min_lane_tokens)
        row = dict(file=src.name, bytes=len(data), config=name, simd=_native._testing.set_simd(True),
                   threads=session.threads, date=time.strftime("%Y-%m-%d"))
        stats: dict = {}
        for side in ("compress", "decompress"):
            T["llm"] = T["heads"] = 0.0
            t0 = time.perf_counter()
            if side == "compress":
                blob = compress(data, session, opts, stats=stats)
            elif decompress(blob, session) != data:
                raise SystemExit(f"{src}: ROUND TRIP FAILED ({name})")
            wall = time.perf_counter() - t0
            n = stats.get("tokens", 0)
            row[side] = dict(seconds=round(wall, 2), tok_s=round(n / wall, 1),
                             llm_ms_per_token=round(1e3 * T["llm"] / n, 3),
                             heads_ms_per_token=round(1e3 * T["heads"] / n, 3),
                             other_ms_per_token=round(1e3 * (wall - T["llm"] - T["heads"]) / n, 3),
                             heads_pct_of_llm=round(100 * T["heads"] / T["llm"], 1))
        row.update(tokens=stats.get("tokens", 0), bpb=round(8 * len(blob) / len(data), 4), verified=True)
        append_row(OUT, row)
    session.close()
    write_table()


def write_table() -> None:
    rows = read_rows(OUT)
    lines = ["| file (bytes) | configuration | side | tok/s | LLM ms/token | ensemble + CDF + coder ms/token | "
             "as % of LLM | other ms/token |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for side in ("compress", "decompress"):
            s = r[side]
            lines.append(f"| {r['file']} ({r['bytes']}) | {r['config']} | {side} | {s['tok_s']} | "
                         f"{s['llm_ms_per_token']} | {s['heads_ms_per_token']} | {s['heads_pct_of_llm']} % | "
                         f"{s['other_ms_per_token']} |")
    lines += ["", f"8 lanes, {rows[-1]['threads']} threads, AVX2 kernels: {rows[-1]['simd']} "
              "(bench/overhead.py; times taken inside the real round trip)."]
    (OUT.parent / "overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
