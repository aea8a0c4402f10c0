"""What a lane start costs: the bits of a lane's first N tokens against the same tokens with context.

    .venv/bin/python bench/coldstart.py [FILE...] [--start 4096] [--lengths 64,256,1024] [--prime 256]

A frame of L lanes cuts its tokens into L contiguous lanes; every lane but the first starts from
BOS with an empty KV cache (the ensemble heads are shared, so they have learnt from the lanes
before it). For the tokens ``S = toks[s:s+N]`` of FILE (default alice29.txt; ``s = --start``)
this measures, with the default level's window and ensemble, in bytes of the lane's coded
stream (each a real arithmetic-coded lane from ``nacrith.llm_frame.encode_group``):

- ``warm``: S in the middle of one lane: size(lane toks[:s+N]) - size(lane toks[:s]);
- ``cold, shared heads``: S as the second lane of a two-lane frame whose first lane is toks[:s]
  (what a frame of several lanes does today);
- ``cold, alone``: S as a one-lane frame of its own (fresh heads too);
- ``primed P``: S after the frame's first P tokens in the same lane:
  size(lane toks[:P] + S) - size(lane toks[:P]) (the most that priming a lane with the tokens
  lane 0 decodes first could gain; the lanes' stagger is not modelled).

Differences of stream sizes carry +-2 bytes of coder flush. Rows: bench/results/coldstart.jsonl;
table: bench/results/coldstart.md. Issue 18 ("lane cold starts") picks a candidate by this table.
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

OUT = ROOT / "bench" / "results" / "coldstart.jsonl"


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--start", default=4096, show_default=True, help="Token index s where the measured lane starts.")
@click.option("--lengths", default="64,256,1024", show_default=True, help="Comma-separated N (tokens measured).")
@click.option("--prime", default=256, show_default=True, help="P: tokens of the frame's start a primed lane sees first.")
@click.option("--table", "only_table", is_flag=True, help="Only print the table of recorded rows.")
def main(paths, start, lengths, prime, only_table):
    if only_table:
        return table()
    from nacrith.llm_frame import encode_group
    from nacrith.model import ATTENTION_MODES
    from nacrith.options import Options
    from nacrith.session import Session

    session = Session(workers=1)
    opts = session.resolve(Options())
    m = session.model

    def size(*lanes: np.ndarray) -> list[int]:
        lanes = [np.ascontiguousarray(x, np.int32) for x in lanes]
        return [len(b) for b in encode_group(session, lanes, opts.window, opts.ensemble, opts.batch,
                                             attention=ATTENTION_MODES[opts.attention])]

    for p in paths or [str(find_corpora() / "canterbury" / "alice29.txt")]:
        toks = np.asarray(m.tokenize(Path(p).read_bytes()), np.int32)
        s, P = start, prime
        ns = [int(x) for x in lengths.split(",")]
        if s + max(ns) > len(toks) or P >= s:
            raise SystemExit(f"{p}: {len(toks)} tokens, too few for start {s} + {max(ns)} (and prime < start)")
        t0 = time.perf_counter()
        base, base_p = size(toks[:s])[0], size(toks[:P])[0]
        for n in ns:
            seg = toks[s:s + n]
            warm = size(toks[:s + n])[0] - base
            shared = size(toks[:s], seg)[1]
            alone = size(seg)[0]
            primed = size(np.concatenate([toks[:P], seg]))[0] - base_p
            append_row(OUT, dict(file=Path(p).name, start=s, tokens=n, prime=P, warm_bytes=warm,
                                 cold_shared_bytes=shared, cold_alone_bytes=alone, primed_bytes=primed,
                                 window=opts.window.size, attention=opts.attention, cpu=cpu_model(),
                                 date=time.strftime("%Y-%m-%d")))
        print(f"{p}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    table()


def table() -> None:
    rows = read_rows(OUT)
    out = ["# What a lane start costs (`bench/coldstart.py`)", "",
           "Bytes of the coded lane for the N tokens from token s, default level (window, ensemble); "
           "in brackets: extra bits per token over `warm` (the same tokens in the middle of one lane). "
           "Stream-size differences carry +-2 bytes.", "",
           "| date | file | s | N | warm | cold, shared heads (today) | cold, alone | primed with the first P |",
           "|---|---|---|---|---|---|---|---|"]

    def cell(b, r):
        return f"{b} ({8 * (b - r['warm_bytes']) / r['tokens']:+.2f})"

    for r in rows:
        out.append(f"| {r['date']} | {r['file']} | {r['start']} | {r['tokens']} | {r['warm_bytes']} | "
                   f"{cell(r['cold_shared_bytes'], r)} | {cell(r['cold_alone_bytes'], r)} | "
                   f"{cell(r['primed_bytes'], r)} (P = {r['prime']}) |")
    OUT.with_suffix(".md").write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
