"""Stray bytes inside prose (issue: any bytes).

    .venv/bin/python bench/anybytes.py [--bytes 8000] [--count 5] FILE...

For each file, a prose excerpt is compressed as is and with ``--count`` invalid or
untokenisable bytes inserted at fixed pseudo-random positions (seeded), both verified by a round
trip. The escapes keep the text on the LLM path, so the file with stray bytes should cost only
the escapes themselves (target: within 2 % of the clean excerpt). Rows are appended as JSON lines
to bench/results/anybytes.jsonl and printed as a Markdown table.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.__main__ import llm_share  # noqa: E402
from nacrith.session import Session  # noqa: E402
from nacrith.policy import compress  # noqa: E402
from nacrith.decoder import decompress  # noqa: E402

OUT = Path(__file__).parent / "results" / "anybytes.jsonl"
# a lone Latin-1 byte, bytes the SmolLM2 vocabulary lacks, a truncated UTF-8 sequence, a C1 byte
STRAY = [b"\xe9", b"\x04", b"\xff", b"\xc3", b"\x1d", b"\xf5", b"\x80"]


def insert_stray(text: bytes, count: int, seed: int = 1) -> bytes:
    """``text`` with ``count`` stray bytes inserted after spaces chosen by ``seed``."""
    rng = random.Random(seed)
    spaces = [i for i, b in enumerate(text) if b == 0x20]
    at = sorted(rng.sample(spaces, count))
    out, last = [], 0
    for k, i in enumerate(at):
        out += [text[last:i + 1], STRAY[k % len(STRAY)]]
        last = i + 1
    return b"".join(out) + text[last:]


def measure(session: Session, data: bytes) -> dict:
    t0 = time.perf_counter()
    blob = compress(data, session)
    ok = decompress(blob, session) == data
    if not ok:
        raise SystemExit("ROUND TRIP FAILED")
    return dict(bytes=len(data), size=len(blob), bpb=round(8 * len(blob) / len(data), 4),
                llm_share=round(llm_share(blob), 4), seconds=round(time.perf_counter() - t0, 1))


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--bytes", "nbytes", default=8000, show_default=True, help="Excerpt length.")
@click.option("--offset", default=10000, show_default=True, help="Excerpt start.")
@click.option("--count", default=5, show_default=True, help="Stray bytes to insert.")
def main(paths, nbytes, offset, count):
    session = Session()
    print("| file | excerpt bytes | clean bytes out | with stray bytes out | difference | LLM share |")
    print("|---|---:|---:|---:|---:|---:|")
    for p in paths:
        text = Path(p).read_bytes()[offset:offset + nbytes]
        clean = measure(session, text)
        stray = measure(session, insert_stray(text, count))
        diff = 100 * (stray["size"] - clean["size"]) / clean["size"]
        row = dict(file=Path(p).name, offset=offset, count=count, clean=clean, stray=stray,
                   difference_pct=round(diff, 2), verified=True, date=time.strftime("%Y-%m-%d"))
        OUT.parent.mkdir(parents=True, exist_ok=True)
        with OUT.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"| {row['file']} | {len(text)} | {clean['size']} | {stray['size']} | {diff:+.2f} % | "
              f"{stray['llm_share']:.3f} |", flush=True)
    write_table()


def write_table() -> None:
    """bench/results/anybytes.md from the recorded rows."""
    rows = [json.loads(x) for x in OUT.read_text().splitlines() if x.strip()]
    out = ["| file [excerpt] | stray bytes | clean bytes out | with stray bytes out | difference | LLM share |",
           "|---|---:|---:|---:|---:|---:|"]
    out += [f"| {r['file']} [{r['offset']}:+{r['clean']['bytes']}] | {r['count']} | {r['clean']['size']} | "
            f"{r['stray']['size']} | {r['difference_pct']:+.2f} % | {r['stray']['llm_share']:.3f} |" for r in rows]
    out.append("\nbench/anybytes.py: stray bytes inserted after spaces (a lone Latin-1 byte, bytes the "
               "vocabulary lacks, a cut UTF-8 sequence); every version round-tripped.")
    OUT.with_suffix(".md").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
