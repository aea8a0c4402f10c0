"""The models table: every model nacrith is tested with, on the same inputs, in one run.

    .venv/bin/python -m bench models [--bytes 51200] [--models q4_1,gemma,f16,f32] [--lockstep/--no-lockstep]

For each model (the default SmolLM2-135M Q4_1; Gemma 3 270M Q4_K_M from the registry; F16 and F32
copies of the default model, ``bench/modelfiles.py``) and each input (the first ``--bytes`` of
alice29.txt; ``bench/data/recent.txt``, written on 2026-12-07, after every model's training
cutoff): the probe's verdict, bpb at the default level, compress and decompress tokens/s, each
also as a ratio to stock llama.cpp prefill of the same tokens with the same weights measured in
the same process (``bench/reference.py``, llama.cpp's own kernels and weight layouts), the
compress rate of the lockstep schedule on the same input (what the batch-invariant kernels buy),
and the peak RSS. Every row is a verified round trip. Each model runs in its own process (its
RSS is its own). Rows: ``bench/results/models.jsonl``; table: ``bench/results/models.md``.
Quiet machine only.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (append_row, context, cpu_model, find_corpora, peak_rss_mb, read_rows,  # noqa: E402
                          timed_round_trip)

OUT = ROOT / "bench" / "results" / "models.jsonl"
TABLE = ROOT / "bench" / "results" / "models.md"
NAMES = {"q4_1": "SmolLM2-135M Q4_1 (default)", "gemma": "Gemma-3-270M Q4_K_M", "f16": "SmolLM2-135M F16",
         "f32": "SmolLM2-135M F32", "bf16": "SmolLM2-135M BF16"}


def model_path(name: str) -> Path:
    from bench.modelfiles import copy_as, default_model, gemma

    if name == "q4_1":
        return default_model()
    if name == "gemma":
        p = gemma()
        if p is None:
            raise SystemExit("Gemma 3 270M is not in the cache: run ./install.sh")
        return p
    return copy_as(default_model(), name.upper())


def inputs(nbytes: int) -> dict[str, bytes]:
    return {f"alice29.txt[:{nbytes}]": (find_corpora() / "canterbury" / "alice29.txt").read_bytes()[:nbytes],
            "recent.txt": (ROOT / "bench" / "data" / "recent.txt").read_bytes()}


def one(name: str, nbytes: int, lockstep: bool, threads: int | None) -> None:
    """All rows of one model (run in a process of its own)."""
    from bench.reference import stock_prefill
    from nacrith.model import ATTENTION_MODES, Model, matmul_kernel
    from nacrith.options import Options
    from nacrith.session import Session

    path = model_path(name)
    session = Session(path, workers=1, threads=threads)
    opts = session.resolve(Options())
    verdict = session.verdict(ATTENTION_MODES[opts.attention])
    with Model(path, repack=True) as stock_model:  # stock llama.cpp's weight layouts for the reference
        for label, data in inputs(nbytes).items():
            toks = session.model.tokenize(data)
            ref = stock_prefill(stock_model, toks, session.threads)
            r = timed_round_trip(session, data, opts, f"{name} {label}")
            n = r["tokens"] or len(toks)
            row = dict(context(session, opts), model=name, model_name=NAMES.get(name, name),
                       weights=sorted(session.model.weight_types),
                       file=label, bytes=len(data), tokens=n, schedule=opts.schedule, verdict=verdict.schedule,
                       bpb=round(r["bpb"], 4), compress_tok_s=round(n / r["compress_s"], 1),
                       decompress_tok_s=round(n / r["decompress_s"], 1), stock_tok_s=ref["tok_s"],
                       matmul=matmul_kernel() or "stock", attention=opts.attention, threads=session.threads)
            row["compress_vs_stock"] = round(row["compress_tok_s"] / ref["tok_s"], 3)
            row["decompress_vs_stock"] = round(row["decompress_tok_s"] / ref["tok_s"], 3)
            if lockstep and opts.schedule == "batched":
                t0 = time.perf_counter()
                from nacrith.policy import compress

                blob = compress(data, session, replace(opts, schedule="lockstep"))
                dt = time.perf_counter() - t0
                row["lockstep_compress_tok_s"] = round(n / dt, 1)
                row["lockstep_bytes"] = len(blob)
            row.update(peak_rss_mb=peak_rss_mb(), cpu=cpu_model(), date=time.strftime("%Y-%m-%d"), verified=True)
            append_row(OUT, row)
    session.close()


def table() -> str:
    rows = read_rows(OUT) if OUT.exists() else []
    lines = ["| date | model (weights) | input | probe | bpb | compress tok/s (x stock) | decompress tok/s (x stock) "
             "| lockstep compress tok/s | stock prefill tok/s | peak RSS |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lock = f"{r['lockstep_compress_tok_s']}" if "lockstep_compress_tok_s" in r else "-"
        lines.append(f"| {r['date']} | {r['model_name']} ({', '.join(r['weights'])}) | {r['file']} ({r['bytes']} B) "
                     f"| {r['verdict']} | {r['bpb']} | {r['compress_tok_s']} ({r['compress_vs_stock']}x) "
                     f"| {r['decompress_tok_s']} ({r['decompress_vs_stock']}x) | {lock} | {r['stock_tok_s']} "
                     f"| {r['peak_rss_mb']} MiB |")
    text = ("# Models table\n\n`python -m bench models` (bench/models.py). Every row a verified round trip at "
            "the default level; x stock: the rate over stock llama.cpp prefill of the same tokens with the same "
            "weights, measured in the same process. CPU: " + (rows[-1]["cpu"] if rows else "?") + ".\n\n"
            + "\n".join(lines) + "\n")
    TABLE.write_text(text)
    return text


def main(argv: list[str]) -> int:
    import click

    @click.command()
    @click.option("--bytes", "nbytes", type=int, default=51200, show_default=True)
    @click.option("--models", default="q4_1,gemma,f16,f32", show_default=True)
    @click.option("--lockstep/--no-lockstep", default=True, show_default=True,
                  help="Also time the lockstep schedule's compression of each input.")
    @click.option("--threads", type=int, default=None)
    @click.option("--one", "single", default=None, hidden=True, help="Run one model in this process.")
    def run(nbytes, models, lockstep, threads, single):
        if single:
            one(single, nbytes, lockstep, threads)
            return
        for name in models.split(","):
            cmd = [sys.executable, "-m", "bench.models", "--one", name, "--bytes", str(nbytes),
                   "--lockstep" if lockstep else "--no-lockstep"] + (["--threads", str(threads)] if threads else [])
            subprocess.run(cmd, check=True, cwd=ROOT)
        print(table())

    run.main(argv, standalone_mode=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

