"""nacrith at its default level beside its peers on the same model: llama-zip and ``xz -9e``.

    .venv/bin/python bench/peers.py FILE... [--bytes N] [--llama-zip PATH/llama_zip.py]

Per FILE (its first N bytes): nacrith's default level as a verified round trip (bpb of the whole
stream, header included; compress/decompress tokens/s), ``xz -9e`` (Python's lzma, preset
9 | PRESET_EXTREME, .xz container), and, when ``--llama-zip`` names a checkout of the public
``AlexBuz/llama-zip`` (``llama_zip.py``), its compressed size with its defaults (``-c``: the
model's full context, window overlap 0) on the same GGUF through this environment's
llama-cpp-python. llama-zip is a measurement tool, never a dependency: it needs
``more-itertools`` and ``tqdm`` on ``PYTHONPATH``, and runs with llama.cpp threads = the cores
(its own default is half of them; the size does not depend on it). Its output is not decoded
here (size only). Rows: bench/results/peers.jsonl; table: bench/results/peers.md.
"""

from __future__ import annotations

import lzma
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import append_row, cpu_model, read_rows, timed_round_trip  # noqa: E402

OUT = ROOT / "bench" / "results" / "peers.jsonl"

# Runs llama_zip.py unmodified in a child process, its llama.cpp threads set to the cores.
_LLAMA_ZIP_RUNNER = """
import os, runpy, sys
import llama_cpp
_init = llama_cpp.Llama.__init__
def init(self, *a, **k):
    k.setdefault("n_threads", os.cpu_count()); k.setdefault("n_threads_batch", os.cpu_count())
    _init(self, *a, **k)
llama_cpp.Llama.__init__ = init
script = sys.argv[1]
sys.argv = [script] + sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


def llama_zip_size(script: Path, model: Path, data: bytes) -> tuple[int, float]:
    """Bytes of ``llama_zip.py MODEL -c`` on ``data`` (binary output) and its seconds.

    Raises SystemExit when llama-zip fails (its stderr's last line)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        p = subprocess.run([sys.executable, "-c", _LLAMA_ZIP_RUNNER, str(script), str(model), "-c"],
                           input=data, stdout=out, stderr=subprocess.PIPE)
        if p.returncode:
            raise SystemExit(f"llama-zip failed: {p.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
        size = out.tell()
    return size, time.perf_counter() - t0


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--bytes", "nbytes", type=int, default=None, help="Only the first N bytes of each file.")
@click.option("--llama-zip", "llama_zip", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Path of llama-zip's llama_zip.py (AlexBuz/llama-zip).")
def main(paths, nbytes, llama_zip):
    from nacrith.options import DEFAULT_LEVEL, Options
    from nacrith.session import Session

    session = Session(workers=1)
    opts = session.resolve(Options())
    for p in paths:
        data = Path(p).read_bytes()[:nbytes]
        r = timed_round_trip(session, data, opts, p)
        llm = bool(r["tokens"]) and not r["stats"].get("fallback")
        n = r["tokens"] or len(session.model.tokenize(data))
        xz = len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
        row = dict(file=Path(p).name, bytes=len(data), level=DEFAULT_LEVEL, tokens=n,
                   nacrith_bytes=len(r["blob"]), nacrith_bpb=round(r["bpb"], 4),
                   compress_tok_s=round(n / r["compress_s"], 1),
                   # a stream without LLM frames decodes without the model: no tokens/s to give
                   decompress_tok_s=round(n / r["decompress_s"], 1) if llm else None, llm_frames=llm,
                   xz_bytes=xz, xz_bpb=round(8 * xz / len(data), 4), threads=session.threads,
                   cpu=cpu_model(), date=time.strftime("%Y-%m-%d"), verified=True)
        if llama_zip:
            size, secs = llama_zip_size(Path(llama_zip), Path(session.model.path), data)
            row.update(llama_zip_bytes=size, llama_zip_bpb=round(8 * size / len(data), 4),
                       llama_zip_s=round(secs, 1),
                       nacrith_vs_llama_zip=round(len(r["blob"]) / size - 1, 4))
        append_row(OUT, row)
    table()


def table() -> None:
    rows = read_rows(OUT)
    out = ["# nacrith beside its peers (`bench/peers.py`)", "",
           "Same GGUF (SmolLM2-135M-Instruct Q4_1), same llama-cpp-python build. nacrith: default level, "
           "verified round trip, whole stream counted. llama-zip: its defaults (full 8,192-token context, "
           "overlap 0), size only. xz: `-9e`.", "",
           "| date | file (bytes) | nacrith bpb | llama-zip bpb | xz -9e bpb | nacrith vs llama-zip | "
           "compress / decompress tok/s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lz = r.get("llama_zip_bpb", "not run")
        vs = f"{100 * r['nacrith_vs_llama_zip']:+.1f} %" if "nacrith_vs_llama_zip" in r else ""
        out.append(f"| {r['date']} | {r['file']} ({r['bytes']}) | {r['nacrith_bpb']} | {lz} | {r['xz_bpb']} | {vs} | "
                   f"{r['compress_tok_s']} / {r['decompress_tok_s'] or 'no LLM frame'} |")
    OUT.with_suffix(".md").write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
