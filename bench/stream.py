"""Streaming memory benchmark: ``cat FILE | nacrith -c | nacrith -dc | cmp - FILE`` with the peak
RSS of each nacrith process (GNU time), for inputs of several sizes. RSS must not grow with the
input length: the model plus a few frames.

    .venv/bin/python bench/stream.py [--sizes 65536,262144] [--frame-size 32768] [FILE]

Results are appended to bench/results/stream.jsonl.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import append_row, find_corpora  # noqa: E402

NACRITH = [sys.executable, "-m", "nacrith.cli"]


@click.command()
@click.argument("path", required=False)
@click.option("--sizes", default="65536,262144", show_default=True, help="Input prefixes, bytes.")
@click.option("--frame-size", default=32768, show_default=True)
def main(path, sizes, frame_size):
    src = Path(path) if path else find_corpora() / "enwik" / "enwik8_head_4000000"
    for n in map(int, sizes.split(",")):
        with tempfile.TemporaryDirectory() as d:
            inp = Path(d) / "in"
            inp.write_bytes(src.read_bytes()[:n])
            rc_c, rc_d = Path(d) / "c.rss", Path(d) / "d.rss"
            cmd = (f"cat {inp} | /usr/bin/time -f %M -o {rc_c} {' '.join(NACRITH)} -q -c --frame-size {frame_size}"
                   f" | /usr/bin/time -f %M -o {rc_d} {' '.join(NACRITH)} -q -dc | cmp - {inp}")
            t0 = time.time()
            r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=ROOT, capture_output=True, text=True)
            dt = time.time() - t0
            row = dict(file=src.name, bytes=n, frame_size=frame_size, identical=r.returncode == 0,
                       compress_peak_rss_mb=round(int(rc_c.read_text().split()[-1]) / 1024, 1),
                       decompress_peak_rss_mb=round(int(rc_d.read_text().split()[-1]) / 1024, 1),
                       seconds=round(dt, 1), stderr=r.stderr[-300:], date=time.strftime("%Y-%m-%d"))
        append_row(ROOT / "bench" / "results" / "stream.jsonl", row)
        if not row["identical"]:
            raise SystemExit("round trip through the pipe failed")
    write_table()


def write_table() -> None:
    """bench/results/stream.md from the recorded rows."""
    res = ROOT / "bench" / "results"
    rows = [json.loads(x) for x in (res / "stream.jsonl").read_text().splitlines() if x.strip()]
    out = ["| input | bytes | frame size | identical | compress peak RSS MB | decompress peak RSS MB | seconds |",
           "|---|---:|---:|---|---:|---:|---:|"]
    out += [f"| {r['file']} | {r['bytes']} | {r['frame_size']} | {r['identical']} | {r['compress_peak_rss_mb']} | "
            f"{r['decompress_peak_rss_mb']} | {r['seconds']} |" for r in rows]
    out.append("\n`cat FILE | nacrith -c | nacrith -dc | cmp - FILE` (bench/stream.py; both processes run at once).")
    (res / "stream.md").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
