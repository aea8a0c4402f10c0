"""Ablation of the ensemble heads (issue: ensemble).

    .venv/bin/python bench/ensemble.py [--enwik-bytes 200000] [--configs a,b,...]

On alice29.txt and the first 200,000 bytes of enwik6, same model and lanes: LLM only; + n-gram;
+ bias head; + mixer variants; + skip. Every row is compressed, decompressed and checked for
identical bytes. Rows go to bench/results/ensemble.jsonl; ``--table`` prints the Markdown table
of the recorded rows (bench/results/ensemble.md).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import append_row, find_corpora, read_rows  # noqa: E402
from nacrith.session import Options, Session  # noqa: E402
from nacrith.policy import compress  # noqa: E402
from nacrith.decoder import decompress  # noqa: E402
from nacrith.params import LLM_ONLY, MIXER_LINEAR, EnsembleParams  # noqa: E402

CORPORA = find_corpora()
OUT = ROOT / "bench" / "results" / "ensemble.jsonl"
D = EnsembleParams()
CONFIGS = {
    "llm-only": LLM_ONLY,
    "+ngram (linear mixer)": EnsembleParams(bias_lr=0.0, mixer=MIXER_LINEAR, mix_lr=0.5, skip_bits=0.0,
                                            shared_heads=False),
    "+bias": EnsembleParams(ngram_order=0, mixer=MIXER_LINEAR, skip_bits=0.0, shared_heads=False),
    "+ngram +bias linear (Hedge) mixer": EnsembleParams(mixer=MIXER_LINEAR, mix_lr=0.5, skip_bits=0.0,
                                                        shared_heads=False),
    "+ngram +bias geometric mixer": EnsembleParams(skip_bits=0.0, shared_heads=False),
    "+skip 0.5 bit": EnsembleParams(skip_bits=0.5, shared_heads=False),
    "+skip 0.5 bit (default)": EnsembleParams(skip_bits=0.5, shared_heads=False),  # first runs' name
    "+shared heads (default)": D,
    "+skip 1.5 bits": EnsembleParams(skip_bits=1.5),
}
DEFAULT_CONFIGS = ["llm-only", "+ngram (linear mixer)", "+bias", "+ngram +bias linear (Hedge) mixer",
                   "+ngram +bias geometric mixer", "+skip 0.5 bit", "+shared heads (default)"]


@click.command()
@click.option("--enwik-bytes", default=200_000, show_default=True)
@click.option("--configs", default=",".join(DEFAULT_CONFIGS), show_default=True,
              help="Comma-separated names from CONFIGS.")
@click.option("--files", default="alice29,enwik6", show_default=True)
@click.option("--table", is_flag=True, help="Only print the table of recorded rows.")
def main(enwik_bytes, configs, files, table):
    if table:
        print_table()
        return
    inputs = {"alice29": (CORPORA / "canterbury/alice29.txt").read_bytes(),
              "enwik6": (CORPORA / "enwik/enwik6").read_bytes()[:enwik_bytes]}
    session = Session()
    for fname in files.split(","):
        data = inputs[fname]
        for name in configs.split(","):
            ens = CONFIGS[name]
            stats: dict = {}
            t0 = time.perf_counter()
            blob = compress(data, session, Options(ensemble=ens), stats=stats)
            t1 = time.perf_counter()
            ok = decompress(blob, session) == data
            t2 = time.perf_counter()
            if not ok:
                raise SystemExit(f"{fname} {name}: ROUND TRIP FAILED")
            n = stats.get("tokens", 0)
            row = dict(file=fname, bytes=len(data), config=name, ensemble=ens.describe(),
                       bpb=round(8 * len(blob) / len(data), 4), compressed=len(blob), tokens=n,
                       enc_tok_s=round(n / (t1 - t0), 1), dec_tok_s=round(n / (t2 - t1), 1),
                       skipped_pct=round(100 * stats.get("skipped", 0) / max(n, 1), 2),
                       peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                       lanes=Options().max_lanes, threads=session.threads, workers=session.workers,
                       verified=True, date=time.strftime("%Y-%m-%d"))
            append_row(OUT, row)
    session.close()
    print_table()


def print_table() -> None:
    rows = read_rows(OUT)
    latest = {}
    for r in rows:
        latest[(r["file"], r["config"])] = r
    print("| file | configuration | bpb | vs LLM only | compress tok/s | decompress tok/s | skipped | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    notes: list[str] = []
    for (f, c), r in latest.items():
        base = latest.get((f, "llm-only"))
        rel = f"{100 * (r['bpb'] / base['bpb'] - 1):+.2f} %" if base else ""
        mark = ""
        if r.get("note"):
            notes += [] if r["note"] in notes else [r["note"]]
            mark = " " + "*" * (notes.index(r["note"]) + 1)
        print(f"| {f} | {c}{mark} | {r['bpb']:.4f} | {rel} | {r['enc_tok_s']} | {r['dec_tok_s']} | "
              f"{r['skipped_pct']} % | {r['peak_rss_mb']} |")
    for i, n in enumerate(notes):
        print(f"\n{'*' * (i + 1)} {n}")


if __name__ == "__main__":
    main()
