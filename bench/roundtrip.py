"""Round-trip benchmark of one or more files through the real model: bpb, wall times, tokens/s.

    .venv/bin/python bench/roundtrip.py ../shared/corpora/canterbury/alice29.txt [--lanes N] ...

Compresses each file, decompresses the result, checks the bytes are identical, and appends one
JSON line per file to bench/results/roundtrip.jsonl (also printed). Run it on a quiet machine:
llama.cpp threads spin, so any other load distorts the timings.
"""

from __future__ import annotations

import datetime
import os
import resource
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import append_row, cpu_model  # noqa: E402
from nacrith import __version__  # noqa: E402
from nacrith.options import Options  # noqa: E402
from nacrith.session import Session  # noqa: E402
from nacrith.policy import compress  # noqa: E402
from nacrith.decoder import decompress  # noqa: E402
from nacrith.params import Window  # noqa: E402


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--lanes", default=Options.max_lanes, show_default=True)
@click.option("--lane-tokens", default=Options.min_lane_tokens, show_default=True)
@click.option("--window", default=Options().window.size, show_default=True)
@click.option("--sink", default=Options().window.sink, show_default=True)
@click.option("--slide", default=Options().window.slide, show_default=True)
@click.option("--kv-budget", default=Options().kv_budget, show_default=True,
              help="KV cells per step across lanes (0: always --window; Options.kv_budget)")
@click.option("--threads", default=None, type=int)
@click.option("--out", default=str(Path(__file__).parent / "results" / "roundtrip.jsonl"), show_default=True)
def main(files, lanes, lane_tokens, window, sink, slide, kv_budget, threads, out):
    session = Session(threads=threads)
    m = session.model
    opts = Options(window=Window(window, sink, slide), max_lanes=lanes, min_lane_tokens=lane_tokens,
                   kv_budget=kv_budget)
    for path in files:
        data = Path(path).read_bytes()
        n_tokens = len(m.tokenize(data))
        t0 = time.perf_counter()
        blob = compress(data, session, opts)
        t1 = time.perf_counter()
        back = decompress(blob, session)
        t2 = time.perf_counter()
        if back != data:
            raise SystemExit(f"{path}: ROUND TRIP FAILED")
        row = {
            "file": os.path.basename(path), "bytes": len(data), "compressed": len(blob),
            "bpb": round(8 * len(blob) / len(data), 4), "tokens": n_tokens,
            "compress_s": round(t1 - t0, 2), "decompress_s": round(t2 - t1, 2),
            "compress_tok_s": round(n_tokens / (t1 - t0), 1),
            "decompress_tok_s": round(n_tokens / (t2 - t1), 1),
            "lanes": lanes, "lane_tokens": lane_tokens, "window": [window, sink, slide],
            "threads": session.threads, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "model_sha256": m.sha256, "backend": session.fingerprint, "nacrith": __version__,
            "cpu": cpu_model(), "date": datetime.date.today().isoformat(), "verified": True,
        }
        append_row(Path(out), row)


if __name__ == "__main__":
    main()
