"""Speed benchmarks of the speed issue, every rate also a ratio to stock llama.cpp prefill of the
same tokens measured in the same run (``bench/reference.py``), every row a verified round trip.

    .venv/bin/python bench/speed.py main   [FILE] [--bytes N]      # default level: the issue's row
    .venv/bin/python bench/speed.py drafts [--sizes 2048,...] [--min-match 3,8] [FILE...]  # one-lane decode
    .venv/bin/python bench/speed.py levels [--bytes 16000] [--levels 1,...,9] FILE...

``main``: compress/decompress tokens/s of FILE (default: all of alice29.txt) at the default level,
bpb and peak RSS. ``drafts``: decoding one-lane frames of alice29.txt and xargs.1 prefixes with
and without drafts (speculative decoding). ``levels``: bpb against compress/decompress tokens/s
per level. Rows: bench/results/speed.jsonl; tables: bench/results/speed.md. Quiet machine only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (append_row, context, cpu_model, find_corpora, peak_rss_mb, read_rows,  # noqa: E402
                          timed_round_trip)
from bench.reference import stock_prefill  # noqa: E402
from nacrith.model import matmul_kernel, set_matmul_kernel  # noqa: E402
from nacrith.options import DEFAULT_LEVEL, Execution, Options  # noqa: E402
from nacrith.session import Session  # noqa: E402

OUT = ROOT / "bench" / "results" / "speed.jsonl"


def _row(suite: str, name: str, data: bytes, session: Session, opts: Options, ref: dict, **extra) -> dict:
    extra.setdefault("matmul", matmul_kernel() or "stock")  # the weight-product kernel (same bits either way)
    r = timed_round_trip(session, data, opts, f"{name} {extra}")
    n = r["tokens"] or len(session.model.tokenize(data))
    row = dict(context(session, opts), suite=suite, file=name, bytes=len(data), tokens=n, **extra, bpb=round(r["bpb"], 4),
               compress_tok_s=round(n / r["compress_s"], 1), decompress_tok_s=round(n / r["decompress_s"], 1),
               stock_tok_s=ref["tok_s"], threads=session.threads, workers=session.workers,
               peak_rss_mb=peak_rss_mb(), cpu=cpu_model(), date=time.strftime("%Y-%m-%d"), verified=True)
    row["compress_vs_stock"] = round(row["compress_tok_s"] / ref["tok_s"], 3)
    row["decompress_vs_stock"] = round(row["decompress_tok_s"] / ref["tok_s"], 3)
    append_row(OUT, row)
    return row


@click.group()
def cli():
    pass


@cli.command()
@click.argument("path", required=False)
@click.option("--bytes", "nbytes", type=int, default=None)
@click.option("--attention", default=None, help="Attention mode (default: the default).")
@click.option("--stock-matmul", is_flag=True,
              help="llama.cpp's own Q4_1 weight products instead of nacrith-mm's tiles (same bits).")
def main(path, nbytes, attention, stock_matmul):
    """The issue's benchmark row: FILE at the default level, against stock prefill."""
    src = Path(path) if path else find_corpora() / "canterbury" / "alice29.txt"
    data = src.read_bytes()[:nbytes]
    session = Session(workers=1)
    ref = stock_prefill(session.model, session.model.tokenize(data), session.threads)
    opts = session.resolve(Options(attention=attention))
    was = set_matmul_kernel(not stock_matmul)
    try:
        _row("main", src.name, data, session, opts, ref, level=DEFAULT_LEVEL, attention=opts.attention,
             matmul="stock" if stock_matmul or not matmul_kernel() else matmul_kernel())
    finally:
        set_matmul_kernel(was)
    table()


@cli.command()
@click.argument("paths", nargs=-1)
@click.option("--sizes", default="2048,4096,8192,16384", show_default=True)
@click.option("--min-match", "min_match", default=str(Execution().draft_min_match), show_default=True,
              help="Comma-separated DRAFT_MIN_MATCH values to try beside no drafts.")
@click.option("--min-hit-rate", "min_hit", default=str(Execution().draft_min_hit_rate), show_default=True,
              help="Comma-separated DRAFT_MIN_HIT_RATE values (each with each min match; 0: always draft).")
def drafts(paths, sizes, min_match, min_hit):
    """One-lane frames decoded with and without drafts (FILE...: default alice29.txt, xargs.1)."""
    session = Session(workers=1)
    paths = paths or (str(find_corpora() / "canterbury" / "alice29.txt"), str(find_corpora() / "canterbury" / "xargs.1"))
    for p in paths:
        full = Path(p).read_bytes()
        for size in map(int, sizes.split(",")):
            data = full[:size]
            if len(data) < size:
                continue
            toks = session.model.tokenize(data)
            ref = stock_prefill(session.model, toks, session.threads)
            # stock's own one-token-per-call loop: the fair reference of a one-lane decoder
            gen = stock_prefill(session.model, toks, session.threads, batch=1)
            grid = [(0, 0, 0.0)] + [(Execution().draft_max, int(x), float(h)) for x in min_match.split(",")
                                    for h in min_hit.split(",")]
            for k, mm, hr in grid:
                ex = session.execution
                saved = ex.draft_max, ex.draft_min_match, ex.draft_min_hit_rate
                ex.draft_max, ex.draft_min_match, ex.draft_min_hit_rate = k, mm or saved[1], hr
                try:
                    opts = session.resolve(Options())
                    _row("drafts", Path(p).name, data, session, opts, ref, draft_max=k,
                         draft_min_match=mm or None, draft_min_hit_rate=hr if k else None,
                         attention=opts.attention, stock_one_token_tok_s=gen["tok_s"])
                finally:
                    ex.draft_max, ex.draft_min_match, ex.draft_min_hit_rate = saved
    table()


@cli.command()
@click.argument("paths", nargs=-1)
@click.option("--bytes", "nbytes", type=int, default=16000, show_default=True)
@click.option("--levels", "which", default="1,2,3,4,5,6,7,8,9", show_default=True)
def levels(paths, nbytes, which):
    """bpb and tokens/s of each level on a prefix of each FILE."""
    session = Session(workers=1)
    paths = paths or (str(find_corpora() / "canterbury" / "alice29.txt"), str(find_corpora() / "enwik" / "enwik6"))
    for p in paths:
        data = Path(p).read_bytes()[:nbytes]
        ref = stock_prefill(session.model, session.model.tokenize(data), session.threads)
        for lv in map(int, which.split(",")):
            opts = session.resolve(Options.from_level(lv))
            _row("levels", Path(p).name, data, session, opts, ref, level=lv, attention=opts.attention)
    table()


@cli.command()
@click.argument("path", required=False)
@click.option("--sizes", default="4096,16384,49152,0", show_default=True,
              help="Prefix sizes in bytes (0: the whole file).")
def sizes(path, sizes):
    """Decompress against compress tokens/s by file size at the default level (the asymmetry a
    user sees: a file of one lane decodes one token per step)."""
    src = Path(path) if path else find_corpora() / "canterbury" / "alice29.txt"
    session = Session(workers=1)
    full = src.read_bytes()
    for n in map(int, sizes.split(",")):
        data = full[:n] if n else full
        ref = stock_prefill(session.model, session.model.tokenize(data), session.threads)
        opts = session.resolve(Options())
        _row("sizes", src.name, data, session, opts, ref, level=DEFAULT_LEVEL, attention=opts.attention)
    table()


def _section(title: str, cols: list[str], rows: list[dict], cells) -> list[str]:
    """A markdown section: title, header of ``cols``, one line of ``cells(row)`` per row."""
    if not rows:
        return []
    return ([f"## {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            + ["| " + " | ".join(str(c) for c in cells(r)) + " |" for r in rows] + [""])


def _rates(r: dict) -> list[str]:
    return [f"{r['compress_tok_s']} ({r['compress_vs_stock']}x)", f"{r['decompress_tok_s']} ({r['decompress_vs_stock']}x)"]


def _matmul(r: dict) -> str:
    """The weight-product kernel of a row (rows before 2026-12-06 ran llama.cpp's own; the levels
    rows of that day were written before the column existed, with nacrith-mm on)."""
    return r.get("matmul") or ("nacrith-mm-1" if r["date"] >= "2026-12-06" else "stock")


def _default(r: dict) -> bool:
    """Whether a row was made with today's default options (rows before the field: main rows)."""
    return r.get("default", True)


def table() -> None:
    rows = read_rows(OUT)
    rate_cols = ["compress tok/s (x stock)", "decompress tok/s (x stock)"]
    out = ["# Speed (`bench/speed.py`)", "",
           "Ratios are to stock llama.cpp prefill of the same tokens in the same run (fa auto, f16 KV, "
           "1024-token windows from an empty cache, 512-token batches, logits for every token; "
           "`bench/reference.py`). One process, all cores of the machine.", ""]
    suite = lambda name: [r for r in rows if r["suite"] == name]  # noqa: E731
    out += _section("Default level", ["date", "file (bytes)", "attention", "weight products", "bpb", *rate_cols,
                                      "stock tok/s", "peak RSS MiB"], [r for r in suite("main") if _default(r)],
                    lambda r: [r["date"], f"{r['file']} ({r['bytes']})", r.get("attention", ""), _matmul(r),
                               r["bpb"], *_rates(r), r["stock_tok_s"], r["peak_rss_mb"]])
    out += _section("Drafts (speculative decoding of one-lane frames)",
                    ["date", "file (bytes)", "drafts (most per call)", "min match (tokens)",
                     "min hit rate", "bpb", *rate_cols,
                     "stock one token per call tok/s (decompress x it)"],
                    # rows from before the gates drafted after any n = 3 token match, at any hit rate
                    suite("drafts"),
                    lambda r: [r["date"], f"{r['file']} ({r['bytes']})", r["draft_max"] or "off",
                               r.get("draft_min_match") or (3 if r["draft_max"] else ""),
                               r.get("draft_min_hit_rate", 0.0) if r["draft_max"] else "", r["bpb"], *_rates(r),
                               f"{r['stock_one_token_tok_s']} ({r['decompress_tok_s'] / r['stock_one_token_tok_s']:.3f}x)"
                               if "stock_one_token_tok_s" in r else "not run"])
    out += _section("By file size (default level)", ["date", "file (bytes)", "bpb", *rate_cols,
                                                     "decompress / compress", "stock tok/s", "peak RSS MiB"],
                    suite("sizes"),
                    lambda r: [r["date"], f"{r['file']} ({r['bytes']})", r["bpb"], *_rates(r),
                               f"{r['decompress_tok_s'] / r['compress_tok_s']:.2f}", r["stock_tok_s"], r["peak_rss_mb"]])
    out += _section("Levels", ["date", "file (bytes)", "level", "attention", "weight products", "bpb", *rate_cols],
                    suite("levels"),
                    lambda r: [r["date"], f"{r['file']} ({r['bytes']})", f"-{r['level']}", r.get("attention", ""),
                               _matmul(r), r["bpb"], *_rates(r)])
    OUT.with_suffix(".md").write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    cli()
