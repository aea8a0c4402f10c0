"""Attention candidates for the bit-exact path (issue: speed): which llama.cpp attention settings
are batch-invariant, and what each costs.

    .venv/bin/python bench/attention.py [--candidates q8_0,q8_0/bf16,...] [--bytes 16000]

For every candidate (flash attention on/off, K and V cache types), on the installed build:

* invariance: logits of the first 640 tokens of alice29.txt (contexts across 512 cells)
  evaluated token by token (2 threads) against 256-token batches (2 threads and 1 thread), 8 and
  16 lanes per step, and the lanes schedule across a window slide (window 512, slide 128:
  encoder rounds against decoder steps); the largest |logit difference| of all (0: invariant);
* attention cost: one decode step of 1 lane and of 8 lanes at contexts 64 and 960, the slope in
  microseconds per token per cached position;
* throughput: encode (256-token batches, 1024-token windows from an empty cache) and decode
  (8 lanes, one token each per step, contexts 0..1023) tokens/s, and the LLM's own bpb on the
  prefix (``--bytes``) from the encode pass;
* stock prefill of the same tokens in the same sitting (``bench/reference.py``), to which the
  rates are also given as ratios.

Rows go to bench/results/attention.jsonl, the table to bench/results/attention.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import append_row, cpu_model, find_corpora, read_rows  # noqa: E402
from bench.reference import stock_prefill  # noqa: E402
from nacrith import backend  # noqa: E402
from nacrith.lanes import decode_lanes, encode_lanes  # noqa: E402
from nacrith.model import ATTENTION_MODES, Attention, LlamaContext, Model, attention_kernel  # noqa: E402
from nacrith.params import Window  # noqa: E402

OUT = ROOT / "bench" / "results" / "attention.jsonl"
N_INV = 640


def parse(name: str) -> Attention:
    """``q8_0``, ``q8_0/bf16`` (flash attention on), ``nofa-f16`` (off), ``f16/bf16+nacrith-fa-1``
    (through the patched kernel whose marker follows the ``+``)."""
    if name in ATTENTION_MODES:
        return ATTENTION_MODES[name]
    flash = 1
    name, _, kernel = name.partition("+")
    if name.startswith("nofa-"):
        flash, name = 0, name[5:]
    k, _, v = name.partition("/")
    return Attention(flash, k, v or k, kernel)


def _ctx(m, att, n_seq=1, cells=1024, nb=256, threads=2):
    return LlamaContext(m, n_seq=n_seq, n_ctx_seq=cells, n_batch=nb, n_threads=threads, attention=att)


def _steps(ctx, seq, lanes):
    """Token by token, ``lanes`` lanes fed the same token per step: (lanes, n, n_vocab)."""
    n = len(seq)
    rows = np.zeros((lanes, n, ctx.n_vocab), np.float32)
    ids = np.arange(lanes, dtype=np.int32)
    for i in range(n):
        lg = ctx.decode(np.full(lanes, seq[i], np.int32), np.full(lanes, i, np.int32), ids)
        rows[:, i] = lg
    return rows


def invariance(m: Model, att: Attention, toks: np.ndarray) -> dict:
    seq = np.concatenate([[m.bos], toks[:N_INV - 1]]).astype(np.int32)
    worst = {}
    with _ctx(m, att) as ctx:
        ref = _steps(ctx, seq, 1)[0]
        ctx.clear()
        worst["batch256"] = float(np.abs(ctx.prefill(seq, 256) - ref).max())
    with _ctx(m, att, threads=1) as ctx:
        worst["batch256_1thread"] = float(np.abs(ctx.prefill(seq, 256) - ref).max())
    if max(worst.values()) == 0:  # the rest only for candidates that passed so far
        for lanes in (8, 16):
            with _ctx(m, att, n_seq=lanes, nb=lanes) as ctx:
                worst[f"lanes{lanes}"] = float(np.abs(_steps(ctx, seq, lanes) - ref[None]).max())
        w = Window(512, 4, 128)
        lane = toks[:700].astype(np.int32)
        enc, dec = [], []
        with _ctx(m, att, cells=512) as ctx:
            encode_lanes(ctx, [lane], m.bos, w, lambda l, t0, lg: enc.append(lg.copy()))
            decode_lanes(ctx, [len(lane)], m.bos, w,
                         lambda l, lg: (dec.append(lg.copy()), int(lane[len(dec) - 1]))[1])
        worst["slide"] = float(np.abs(np.concatenate(enc) - np.stack(dec)).max())
    return dict(max_diff=max(worst.values()), diffs=worst)


def step_cost(m: Model, att: Attention, toks: np.ndarray, lanes: int, steps: int = 12) -> dict:
    """ms per decode step at contexts 64 and 960 and the slope in us per token per position."""
    ms = {}
    with _ctx(m, att, n_seq=lanes, nb=256) as ctx:
        for c in (64, 960):
            ctx.clear()
            for s in range(lanes):  # fill each lane's cache to c positions
                for i in range(0, c, 256):
                    j = min(c, i + 256)
                    ctx.decode(toks[i:j], np.arange(i, j, dtype=np.int32), np.full(j - i, s, np.int32),
                               np.zeros(j - i, np.int8))
            ids = np.arange(lanes, dtype=np.int32)
            t0 = time.perf_counter()
            for i in range(steps):
                ctx.decode(np.full(lanes, toks[c + i], np.int32), np.full(lanes, c + i, np.int32), ids)
            ms[c] = 1000 * (time.perf_counter() - t0) / steps
    slope_us = 1000 * (ms[960] - ms[64]) / (960 - 64) / lanes
    return dict(ms64=round(ms[64], 2), ms960=round(ms[960], 2), us_per_pos=round(slope_us, 3))


def throughput(m: Model, att: Attention, toks: np.ndarray, nbytes: int) -> dict:
    """Encode tok/s + LLM bpb (1024-token windows, 256-token batches), decode tok/s (8 lanes)."""
    bits = 0.0
    with _ctx(m, att, nb=256) as ctx:
        t0 = time.perf_counter()
        for w0 in range(0, len(toks), 1024):
            ctx.clear()
            win = np.concatenate([[m.bos], toks[w0:w0 + 1023]]).astype(np.int32)
            tgt = toks[w0:w0 + 1024]
            lg = ctx.prefill(win, 256)[:len(tgt)].astype(np.float64)
            mx = lg.max(1, keepdims=True)
            lse = np.log(np.exp(lg - mx).sum(1)) + mx[:, 0]
            bits += float((lse - lg[np.arange(len(tgt)), tgt]).sum() / np.log(2))
        enc = len(toks) / (time.perf_counter() - t0)
    n_dec = min(len(toks) // 8, 1024)
    lanes = 8
    with _ctx(m, att, n_seq=lanes, nb=lanes) as ctx:
        seqs = [toks[i * n_dec:(i + 1) * n_dec].astype(np.int32) for i in range(lanes)]
        ids = np.arange(lanes, dtype=np.int32)
        t0 = time.perf_counter()
        for i in range(n_dec):
            ctx.decode(np.array([s[i] for s in seqs], np.int32), np.full(lanes, i, np.int32), ids)
        dec = lanes * n_dec / (time.perf_counter() - t0)
    return dict(encode_tok_s=round(enc, 1), decode8_tok_s=round(dec, 1), llm_bpb=round(bits / nbytes, 4))


@click.command()
@click.option("--candidates", default="q8_0,q8_0/bf16,f16/bf16,bf16,q8_0/f32,f16/f32,f16,nofa-f16",
              show_default=True)
@click.option("--bytes", "nbytes", default=16000, show_default=True)
@click.option("--threads", default=2, show_default=True)
@click.option("--skip-speed-if-variant", is_flag=True, help="Only the invariance of non-invariant ones.")
@click.option("--one", is_flag=True, hidden=True, help="Run in this process (main runs each candidate in a child).")
def main(candidates, nbytes, threads, skip_speed_if_variant, one):
    if not one:  # a child per candidate: llama.cpp aborts the process on settings it cannot run
        import subprocess

        for name in candidates.split(","):
            rc = subprocess.run([sys.executable, __file__, "--one", "--candidates", name, "--bytes", str(nbytes),
                                 "--threads", str(threads)] + (["--skip-speed-if-variant"] if skip_speed_if_variant
                                                                else [])).returncode
            if rc != 0:
                append_row(OUT, dict(candidate=parse(name).name, build=backend.fingerprint(None), threads=threads,
                                     bytes=nbytes, date=time.strftime("%Y-%m-%d"),
                                     error=f"llama.cpp aborted the process (exit {rc})"))
        table()
        return
    m = Model()
    data = (find_corpora() / "canterbury" / "alice29.txt").read_bytes()[:nbytes]
    toks = m.tokenize(data)
    ref = stock_prefill(m, toks, threads)
    build = backend.fingerprint(None) + (f" patched={attention_kernel()}" if attention_kernel() else "")
    for name in candidates.split(","):
        att = parse(name)
        row = dict(candidate=att.name, build=build, cpu=cpu_model(), threads=threads, bytes=nbytes,
                   stock_tok_s=ref["tok_s"], date=time.strftime("%Y-%m-%d"))
        try:
            row.update(invariance(m, att, toks))
        except Exception as e:  # a setting llama.cpp refuses
            row.update(error=f"{type(e).__name__}: {e}")
            append_row(OUT, row)
            continue
        row["invariant"] = row["max_diff"] == 0
        if row["invariant"] or not skip_speed_if_variant:
            row["step1"] = step_cost(m, att, toks, 1)
            row["step8"] = step_cost(m, att, toks, 8)
            row.update(throughput(m, att, toks, len(data)))
            row["encode_vs_stock"] = round(row["encode_tok_s"] / ref["tok_s"], 3)
            row["decode8_vs_stock"] = round(row["decode8_tok_s"] / ref["tok_s"], 3)
        append_row(OUT, row)


def table() -> None:
    rows = read_rows(OUT)
    lines = ["# Attention candidates (`bench/attention.py`)", "",
             "Every row: the installed build, alice29.txt prefix, 2 threads; ratios are to stock "
             "llama.cpp prefill (fa auto, f16 KV, 1024-token windows, 512-token batches, all logits) "
             "of the same tokens in the same run. us/pos: extra time per token per cached position "
             "(slope of the decode step between contexts 64 and 960).", "",
             "| date | build | candidate | invariant (max logit diff) | us/pos 1 lane | us/pos 8 lanes "
             "| step ms 1 lane @64/@960 | encode tok/s (x stock) | decode 8 lanes tok/s (x stock) | LLM bpb |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bld = "LLAMAFILE" if "LLAMAFILE" in r.get("build", "") else "no LLAMAFILE"
        bld += " + nacrith-fa patch" if "patched=" in r.get("build", "") else ""
        if "error" in r:
            lines.append(f"| {r['date']} | {bld} | {r['candidate']} | refused: {r['error'][:60]} | | | | | | |")
            continue
        inv = "yes (0)" if r["invariant"] else f"no ({r['max_diff']:.3g})"
        if "step1" not in r:
            lines.append(f"| {r['date']} | {bld} | {r['candidate']} | {inv} | | | | | | |")
            continue
        lines.append(
            f"| {r['date']} | {bld} | {r['candidate']} | {inv} | {r['step1']['us_per_pos']} | {r['step8']['us_per_pos']} "
            f"| {r['step1']['ms64']} / {r['step1']['ms960']} | {r['encode_tok_s']} ({r['encode_vs_stock']}x) "
            f"| {r['decode8_tok_s']} ({r['decode8_vs_stock']}x) | {r['llm_bpb']} |")
    (OUT.with_suffix(".md")).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
