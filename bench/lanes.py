"""Lanes x workers and sliding-window benchmarks (issue: throughput).

    .venv/bin/python bench/lanes.py grid   [--bytes N] FILE...   # lanes 1..32 x workers 1, 2
    .venv/bin/python bench/lanes.py window [--bytes N] FILE...   # window 512..4096, sinks 0 / 4
    .venv/bin/python bench/lanes.py slide                        # seconds per slide vs re-evaluation
    .venv/bin/python bench/lanes.py steps                        # LLM-only decode step vs lanes, context

Every row is a real compress + decompress through the model, checked for identical bytes.
Rows are appended as JSON lines to bench/results/lanes.jsonl and printed as a Markdown table.
Run on a quiet machine (llama.cpp threads spin).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import append_row, find_corpora, read_rows  # noqa: E402
from nacrith.options import Options  # noqa: E402
from nacrith.session import Session  # noqa: E402
from nacrith.policy import compress  # noqa: E402
from nacrith.decoder import decompress  # noqa: E402
from nacrith.params import EnsembleParams  # noqa: E402
from nacrith.params import Window  # noqa: E402
from nacrith.model import LlamaContext  # noqa: E402

OUT = Path(__file__).parent / "results" / "lanes.jsonl"


def rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, kids) / 1024, 1)


def run(session: Session, path: str, data: bytes, opts: Options, extra: dict) -> dict:
    m = session.model
    n_tok = len(m.tokenize(data))
    t0 = time.perf_counter()
    blob = compress(data, session, opts)
    t1 = time.perf_counter()
    back = decompress(blob, session)
    t2 = time.perf_counter()
    if back != data:
        raise SystemExit(f"{path}: ROUND TRIP FAILED with {extra}")
    row = dict(file=os.path.basename(path), bytes=len(data), tokens=n_tok, **extra,
               bpb=round(8 * len(blob) / len(data), 4),
               enc_tok_s=round(n_tok / (t1 - t0), 1), dec_tok_s=round(n_tok / (t2 - t1), 1),
               enc_kb_s=round(len(data) / 1024 / (t1 - t0), 2), dec_kb_s=round(len(data) / 1024 / (t2 - t1), 2),
               peak_rss_mb_per_process=rss_mb(), threads=session.threads, verified=True)
    append_row(OUT, row)
    return row


def prefill(ctx: LlamaContext, toks: np.ndarray, n: int, seq: int = 0) -> float:
    """Evaluate ``toks[:n]`` as positions 0..n-1 of ``seq`` in 256-token batches, as the encoder
    does; returns the seconds spent in ``decode``."""
    t0 = time.perf_counter()
    for a in range(0, n, 256):
        b = min(n, a + 256)
        ctx.decode(toks[a:b], np.arange(a, b, dtype=np.int32), np.full(b - a, seq, np.int32))
    return time.perf_counter() - t0


@click.group()
def main():
    pass


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--bytes", "nbytes", default=16000, show_default=True, help="Prefix of each file.")
@click.option("--lanes", default="1,2,4,8,16,32", show_default=True)
@click.option("--workers", default="1,2", show_default=True)
@click.option("--heads", default="shared,independent", show_default=True,
              help="Lane heads: shared (one process per frame) and/or independent (lanes split over workers).")
def grid(files, nbytes, lanes, workers, heads):
    """bpb and tokens/s for lanes x workers (threads = cores / workers), with the lanes' ensemble
    heads shared or independent. Shared heads keep a frame's lanes in one process, so they are
    run with one worker only."""
    cores = len(os.sched_getaffinity(0))
    for h in heads.split(","):
        ens = EnsembleParams(shared_heads=h == "shared")
        for w in map(int, workers.split(",")):
            if h == "shared" and w > 1:
                continue
            session = Session(workers=w, threads=max(1, cores // w))
            for path in files:
                data = Path(path).read_bytes()[:nbytes]
                for L in map(int, lanes.split(",")):
                    if w > L:
                        continue
                    run(session, path, data, Options(ensemble=ens, max_lanes=L, min_lane_tokens=1),
                        dict(suite="grid", lanes=L, workers=w, heads=h))
            session.close()


@main.command()
def table():
    """Print the recorded rows (bench/results/lanes.jsonl) as Markdown tables."""
    rows = read_rows(OUT)
    grid_rows = [r for r in rows if r.get("suite") == "grid"]
    if grid_rows:
        print("| file (bytes) | heads | workers | lanes | bpb | compress tok/s | decompress tok/s | peak RSS MB/process |")
        print("|---|---|---|---|---|---|---|---|")
        for r in grid_rows:
            print(f"| {r['file']} ({r['bytes']}) | {r.get('heads', 'independent')} | {r['workers']} | {r['lanes']} | "
                  f"{r['bpb']} | {r['enc_tok_s']} | {r['dec_tok_s']} | {r['peak_rss_mb_per_process']} |")
        ens = OUT.parent / "ensemble.jsonl"
        default = [r for r in read_rows(ens) if r["config"] == "+shared heads (default)"] if ens.exists() else []
        if default:  # the default (8 lanes) on the full file is the ensemble benchmark's last row
            r = default[-1]
            print(f"| {r['file']} ({r['bytes']}), from bench/ensemble.py | shared | {r['workers']} | {r['lanes']} | "
                  f"{r['bpb']} | {r['enc_tok_s']} | {r['dec_tok_s']} | {r['peak_rss_mb']} |")
    win = [r for r in rows if r.get("suite") == "window"]
    if win:
        print()
        print("| file (bytes) | window | sink | slide | bpb | compress tok/s | decompress tok/s |")
        print("|---|---|---|---|---|---|---|")
        for r in win:
            print(f"| {r['file']} ({r['bytes']}) | {r['window']} | {r['sink']} | {r['slide']} | {r['bpb']} | "
                  f"{r['enc_tok_s']} | {r['dec_tok_s']} |")
    sl = [r for r in rows if r.get("suite") == "slide"]
    if sl:
        print()
        print("| window | slide | seconds per slide | seconds to re-evaluate the kept window | one decode step, s |")
        print("|---|---|---|---|---|")
        for r in sl:
            print(f"| {r['window']} | {r['slide']} | {r['seconds_per_slide']} | {r['seconds_reevaluate_kept']} | "
                  f"{r['step_seconds']} |")
    st = [r for r in rows if r.get("suite") == "steps"]
    if st:
        one = {r["context"]: r["decode_tok_s"] for r in st if r["lanes"] == 1}
        print()
        print("LLM alone (`bench/lanes.py steps`): decode steps of one token per lane, every lane's KV cache "
              "holding *context* positions; *batched* is the encoder's 256-token batches over the same positions.")
        print()
        print("| context | lanes | step ms | decode tok/s | vs 1 lane | batched tok/s |")
        print("|---|---|---|---|---|---|")
        for r in st:
            ratio = f"{r['decode_tok_s'] / one[r['context']]:.2f}x" if r["context"] in one else "-"
            print(f"| {r['context']} | {r['lanes']} | {r['step_ms']} | {r['decode_tok_s']} | {ratio} | "
                  f"{r['batched_tok_s']} |")


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--bytes", "nbytes", default=16000, show_default=True)
@click.option("--sizes", default="512,1024,2048,4096", show_default=True)
def window(files, nbytes, sizes):
    """bpb against window size, with 4 sink tokens and with the minimum of 1 (BOS only)."""
    session = Session()
    for path in files:
        data = Path(path).read_bytes()[:nbytes]
        for size in map(int, sizes.split(",")):
            for sink in (1, 4):
                opts = Options(window=Window(size, sink, size // 4), max_lanes=1, kv_budget=0)
                run(session, path, data, opts, dict(suite="window", window=size, sink=sink, slide=size // 4))


@main.command()
@click.option("--sizes", default="512,1024,2048,4096", show_default=True)
def slide(sizes):
    """Seconds per slide (seq_rm + seq_add + K-shift at the next decode) against re-evaluating
    the kept part of the window from scratch."""
    session = Session()
    m = session.model
    toks = m.tokenize((find_corpora() / "canterbury/alice29.txt").read_bytes())
    for size in map(int, sizes.split(",")):
        w = Window(size, 4, size // 4)
        with LlamaContext(m, n_seq=1, n_ctx_seq=size, n_batch=256, n_threads=session.threads) as ctx:
            prefill(ctx, toks, size)

            def one(p):
                return ctx.decode(toks[p:p + 1], np.array([p], np.int32), np.zeros(1, np.int32))

            # a normal step at a full window: remove the last position and evaluate it again
            ctx.seq_rm(0, size - 1, -1)
            t0 = time.perf_counter()
            one(size - 1)
            t_step = time.perf_counter() - t0
            ctx.seq_rm(0, w.sink, w.sink + w.slide)
            ctx.seq_add(0, w.sink + w.slide, size, -w.slide)
            t0 = time.perf_counter()
            one(size - w.slide)
            t_slide = time.perf_counter() - t0 - t_step
            kept = size - w.slide
            ctx.clear()
            t_reeval = prefill(ctx, toks, kept)
        row = dict(suite="slide", window=size, sink=4, slide=w.slide, seconds_per_slide=round(t_slide, 4),
                   seconds_reevaluate_kept=round(t_reeval, 3), step_seconds=round(t_step, 4))
        append_row(OUT, row)


@main.command()
@click.option("--lanes", "lane_counts", default="1,2,4,8,16", show_default=True)
@click.option("--contexts", default="100,500,900", show_default=True)
@click.option("--steps", "n_steps", default=24, show_default=True)
def steps(lane_counts, contexts, n_steps):
    """The LLM alone, no heads, no coder: tokens/s of decode steps (one token per lane) with every
    lane's KV cache holding CONTEXT positions, against the batched evaluation the encoder uses
    (256-token batches over the same positions, logits for every token). The ratio of the L-lane to
    the 1-lane rate is the most lanes can give the decoder on this machine; the batched rate is its
    ceiling."""
    session = Session()
    m = session.model
    toks = m.tokenize((find_corpora() / "canterbury/alice29.txt").read_bytes())
    for ctx_len in map(int, contexts.split(",")):
        for n in map(int, lane_counts.split(",")):
            span = ctx_len + n_steps
            with LlamaContext(m, n_seq=n, n_ctx_seq=span, n_batch=256, n_threads=session.threads) as ctx:
                t_fill = sum(prefill(ctx, toks[q * 2000:], ctx_len, q) for q in range(n))
                seqs = np.arange(n, dtype=np.int32)
                t0 = time.perf_counter()
                for i in range(n_steps):
                    tk = np.array([toks[q * 2000 + ctx_len + i] for q in range(n)], np.int32)
                    ctx.decode(tk, np.full(n, ctx_len + i, np.int32), seqs)
                t_steps = time.perf_counter() - t0
            append_row(OUT, dict(suite="steps", lanes=n, context=ctx_len, step_ms=round(1000 * t_steps / n_steps, 2),
                                 decode_tok_s=round(n * n_steps / t_steps, 1),
                                 batched_tok_s=round(n * ctx_len / t_fill, 1), threads=session.threads))


if __name__ == "__main__":
    main()
