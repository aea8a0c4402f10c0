"""Ablation of the ensemble heads (issue: ensemble).

    .venv/bin/python bench/ensemble.py [--enwik-bytes 200000] [--configs a,b,...]
    .venv/bin/python bench/ensemble.py --files alice29 --bytes 50000 --lanes 2048:8,8192:8 --windows 1024,2048
    .venv/bin/python bench/ensemble.py --files html_x_4 --llm-path   # the LLM frame even where xz wins
    .venv/bin/python bench/ensemble.py --extra log=PATH --files log,requests_models.py --configs ...
    .venv/bin/python bench/ensemble.py --matrix NOTE   # the rows of one run: inputs x configurations

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

from bench.common import append_row, find_corpora, read_rows, timed_round_trip  # noqa: E402
from nacrith.format import FRAME_LLM, iter_frames  # noqa: E402
from nacrith.options import Options  # noqa: E402
from nacrith.session import Session  # noqa: E402
from nacrith.params import DEFAULT_ENSEMBLE, LLM_ONLY, MIXER_LINEAR, EnsembleParams, Window  # noqa: E402

CORPORA = find_corpora()
OUT = ROOT / "bench" / "results" / "ensemble.jsonl"
D = DEFAULT_ENSEMBLE
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
    "+shared heads (default)": EnsembleParams(),  # the name of the default before the match model
    "+shared heads": EnsembleParams(),
    "+skip 1.5 bits": EnsembleParams(skip_bits=1.5),
    "+match model (default)": D,
    "+match model, lr 0.02": EnsembleParams(**dict(vars(D), match_lr=0.02)),
    "llm-only +match model": EnsembleParams(**dict(vars(LLM_ONLY), match_min=4, match_lr=0.05)),
}
DEFAULT_CONFIGS = ["llm-only", "+ngram (linear mixer)", "+bias", "+ngram +bias linear (Hedge) mixer",
                   "+ngram +bias geometric mixer", "+skip 0.5 bit", "+shared heads", "+match model (default)"]


@click.command()
@click.option("--enwik-bytes", default=200_000, show_default=True)
@click.option("--configs", default=",".join(DEFAULT_CONFIGS), show_default=True,
              help="Comma-separated names from CONFIGS.")
@click.option("--files", default="alice29,enwik6", show_default=True)
@click.option("--bytes", "nbytes", default=0, help="Use only the first N bytes of each file (0: all).")
@click.option("--lanes", "lane_grid", default="",
              help="Comma-separated MIN_LANE_TOKENS:MAX_LANES pairs (default: Options' defaults).")
@click.option("--windows", default="", help="Comma-separated window sizes (sink 4, slide size/4; "
              "default: Options' default window).")
@click.option("--llm-path", is_flag=True, help="Code the LLM frame alone (no binary candidates, no "
              "guard): its payload, decoded and checked, even where xz or zstd would win.")
@click.option("--encode-only", is_flag=True, help="With --llm-path: encode only (a ratio measured in one "
              "run, not decoded: the row says verified false), for windows whose decoding takes hours here.")
@click.option("--note", default="", help="A note recorded with every row.")
@click.option("--extra", multiple=True, metavar="NAME=PATH",
              help="Another input, by path (data kept out of the repo, e.g. the peers' log and JSON files); "
                   "then name it in --files.")
@click.option("--table", is_flag=True, help="Only print the table of recorded rows.")
@click.option("--matrix", metavar="NOTE", default="",
              help="Only print the rows recorded with this note as one line per input, one column per "
                   "configuration (the README's ablation table).")
def main(enwik_bytes, configs, files, nbytes, lane_grid, windows, llm_path, encode_only, note, extra, table, matrix):
    if table:
        print_table()
        return
    if matrix:
        print_matrix(matrix)
        return
    if encode_only and not llm_path:
        raise click.UsageError("--encode-only needs --llm-path")
    inputs = {"alice29": lambda: (CORPORA / "canterbury/alice29.txt").read_bytes(),
              "enwik6": lambda: (CORPORA / "enwik/enwik6").read_bytes()[:enwik_bytes],
              "fields.c": lambda: (CORPORA / "canterbury/fields.c").read_bytes(),
              "cp.html": lambda: (CORPORA / "canterbury/cp.html").read_bytes(),
              # html repeated four times (issue 18): four copies of the first 12 KB of snappy's html
              "html_x_4": lambda: (CORPORA / "snappy/html").read_bytes()[:12288] * 4,
              "population.csv": lambda: (CORPORA / "realworld/population.csv").read_bytes(),
              "requests_models.py": lambda: (CORPORA / "realworld/requests_models.py").read_bytes()}
    for e in extra:
        name, _, path = e.partition("=")
        if not path:
            raise click.BadParameter(f"{e!r} is not NAME=PATH", param_hint="--extra")
        inputs[name] = lambda path=path: Path(path).read_bytes()
    d = Options()
    grid = [tuple(int(x) for x in g.split(":")) for g in lane_grid.split(",") if g] or \
        [(d.min_lane_tokens, d.max_lanes)]
    wins = [Window(int(w), 4, int(w) // 4) for w in windows.split(",") if w] or [d.window]
    session = Session()
    for fname in files.split(","):
        data = inputs[fname]()
        if nbytes:
            data = data[:nbytes]
        for name in configs.split(","):
            for mlt, ml in grid:
                for win in wins:
                    opts = Options(ensemble=CONFIGS[name], window=win, min_lane_tokens=mlt, max_lanes=ml,
                                   kv_budget=0 if windows else d.kv_budget)  # --windows: fixed
                    row = measure(session, fname, data, name, opts, llm_path, encode_only)
                    if note:
                        row["note"] = note
                    append_row(OUT, row)
    session.close()
    print_table()


def llm_round_trip(session: Session, data: bytes, opts: Options, stats: dict,
                   decode: bool = True) -> tuple[int, float, float | None, Window]:
    """(payload bytes, encode s, decode s, KV window) of ``data`` as one LLM frame, decoded and
    checked (``decode`` false: not decoded, decode s ``None``). The window is the one the stream
    writer picks for the frame (``Options.frame_window``: ``opts.kv_budget`` widens it)."""
    from nacrith.llm_frame import decode_group, encode_widened_frame, lane_bytes
    from nacrith.format import read_llm_payload

    t0 = time.perf_counter()
    coded = encode_widened_frame(session, data, opts, stats=stats)
    t1 = time.perf_counter()
    if coded is None:
        raise SystemExit("not an LLM frame (its tokens do not reproduce it)")
    payload, window = coded
    if not decode:
        return len(payload), t1 - t0, None, window
    counts, streams = read_llm_payload(payload, len(data), 0)
    lanes = decode_group(session, [bytes(s) for s in streams], counts, window, opts.ensemble, len(data))
    back = b"".join(lane_bytes(session.model, t, e) for t, e in lanes)
    t2 = time.perf_counter()
    if back != data:
        raise SystemExit("LLM frame ROUND TRIP FAILED")
    return len(payload), t1 - t0, t2 - t1, window


def measure(session: Session, fname: str, data: bytes, name: str, opts: Options, llm_path: bool,
            encode_only: bool = False) -> dict:
    """One verified round trip of ``data`` with ``opts`` (``encode_only``: one encode): its row."""
    ens = opts.ensemble
    stats: dict = {}
    window = opts.window  # the LLM-path frame's; a stream's first LLM frame records its own
    if llm_path:
        size, te, td, window = llm_round_trip(session, data, opts, stats, decode=not encode_only)
    else:
        r = timed_round_trip(session, data, opts, f"{fname} {name}")
        stats = r["stats"]
        size, te, td = len(r["blob"]), r["compress_s"], r["decompress_s"]
        window = next((fr.params.window for fr in iter_frames(r["blob"]) if getattr(fr, "kind", None) == FRAME_LLM),
                      window)
    n = stats.get("tokens", 0)
    n_lanes = max(1, min(opts.max_lanes, n // opts.min_lane_tokens)) if n else 0
    return dict(file=fname, bytes=len(data), config=name, ensemble=ens.describe(),
                bpb=round(8 * size / len(data), 4), compressed=size, tokens=n,
                enc_tok_s=round(n / te, 1), dec_tok_s=round(n / td, 1) if td else None,
                skipped_pct=round(100 * stats.get("skipped", 0) / max(n, 1), 2),
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                lanes=n_lanes, max_lanes=opts.max_lanes, min_lane_tokens=opts.min_lane_tokens,
                window=window.size, kv_budget=opts.kv_budget, attention=session.resolve(opts).attention, frames=stats.get("frames", {"llm (payload only)": 1} if llm_path else {}),
                llm_path=llm_path, threads=session.threads, workers=session.workers,
                verified=td is not None, date=time.strftime("%Y-%m-%d"))


def print_table() -> None:
    rows = read_rows(OUT)
    latest = {}
    for r in rows:
        key = (r["file"], r["bytes"], r["config"], r.get("min_lane_tokens", 2048), r.get("max_lanes", 8),
               r.get("window", 1024), r.get("llm_path", False), r.get("verified", True))
        latest[key] = r
    print("| file (bytes) | configuration | lanes (min tokens, max) | window | bpb | vs LLM only | "
          "compress tok/s | decompress tok/s | skipped | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    notes: list[str] = []
    for key, r in latest.items():
        base = latest.get(key[:2] + ("llm-only",) + key[3:])
        rel = f"{100 * (r['bpb'] / base['bpb'] - 1):+.2f} %" if base else ""
        mark = ""
        if r.get("note"):
            notes += [] if r["note"] in notes else [r["note"]]
            mark = " " + "*" * (notes.index(r["note"]) + 1)
        what = f"{r['file']} ({r['bytes']})" + (", LLM frame" if r.get("llm_path") else "") + \
            ("" if r.get("verified", True) else ", encoded only")
        lanes = f"{r['lanes']} ({key[3]}, {key[4]})"
        print(f"| {what} | {r['config']}{mark} | {lanes} | {key[5]} | {r['bpb']:.4f} | {rel} | {r['enc_tok_s']} | "
              f"{r['dec_tok_s'] or ''} | {r['skipped_pct']} % | {r['peak_rss_mb']} |")
    for i, n in enumerate(notes):
        print(f"\n{'*' * (i + 1)} {n}")


def print_matrix(note: str) -> None:
    """The rows recorded with ``note``: one line per input (bytes, tokens, lanes, window), one
    column per configuration (bpb and coded bytes), then the last configuration against LLM only."""
    rows = [r for r in read_rows(OUT) if r.get("note") == note]
    if not rows:
        raise SystemExit(f"no rows recorded with the note {note!r}")
    configs = list(dict.fromkeys(r["config"] for r in rows))
    cells: dict = {}
    for r in rows:
        cells.setdefault((r["file"], r["bytes"]), {})[r["config"]] = r
    print("| input (bytes; tokens, lanes x window) | " + " | ".join(configs) + f" | {configs[-1]} vs {configs[0]} |")
    print("|---" * (len(configs) + 2) + "|")
    for (fname, nbytes), by in cells.items():
        any_row = next(iter(by.values()))
        line = f"| {fname} ({nbytes:,}; {any_row['tokens']:,}, {any_row['lanes']} x {any_row['window']}) |"
        best = min(r["compressed"] for r in by.values())
        for c in configs:
            r = by.get(c)
            cell = f" {r['bpb']:.4f} ({r['compressed']:,} B)" if r else " "
            line += (f" **{cell.strip()}** |" if r and r["compressed"] == best else cell + " |")
        first, last = by.get(configs[0]), by.get(configs[-1])
        rel = f" {100 * (last['compressed'] / first['compressed'] - 1):+.1f} % |" if first and last else " |"
        print(line + rel)


if __name__ == "__main__":
    main()
