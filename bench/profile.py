"""Where the time of a token goes (issue: speed), measured with ``perf`` on a real round trip.

    .venv/bin/python bench/profile.py [FILE] [--bytes 16000] [--lanes-of 8192]

Compresses, then decompresses, a prefix of FILE (default alice29.txt) at the default level, each
side in its own process under ``perf record`` (Debian package ``linux-perf``), and sorts the
samples of every thread into: weight products (the Q4_1/Q8_0 matrix-vector kernels and the
quantisation of their activations), attention (flash attention: K dots, softmax, V sums, and the
KV cache's conversions), other ggml ops (norms, RoPE, adds, graph build and scheduling), threads
waiting at ggml's barrier (spinning), llama.cpp outside ggml (llama_decode's batch split, KV
bookkeeping, logits copy), the ensemble + CDF + coder (nacrith's native module), and the Python
loop (the interpreter, numpy). Shares are of all samples of the process after the model is
loaded; per-token times divide the side's wall time by its tokens.

Rows go to bench/results/profile.jsonl, the table to bench/results/profile.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import append_row, cpu_model, find_corpora, read_rows  # noqa: E402

OUT = ROOT / "bench" / "results" / "profile.jsonl"

BUCKETS = ["weight products", "output layer", "attention", "other ggml ops", "barrier wait", "llama.cpp",
           "ensemble + CDF + coder", "Python loop", "kernel", "other"]


def bucket(frames: list[tuple[str, str]]) -> str:
    """The bucket of one sample from its call chain, leaf first: [(symbol, dso), ...].

    The output layer is the only Q8_0 weight of the default model (token_embd, tied), so a
    Q8_0 dot outside flash attention is the output layer; K dots inside it are attention."""
    if not frames:
        return "other"
    sym, dso = frames[0]
    chain = " ".join(s for s, _ in frames)
    if "flash_attn" in chain:
        return "attention"
    if re.search(r"barrier|sched_yield|futex", sym) or "libgomp" in dso:
        return "barrier wait"
    if "ggml" in dso:
        if "vec_dot_q8_0_q8_0" in sym:
            return "output layer"
        if re.search(r"vec_dot|gemm|gemv|quantize_row|quantize_q8|mul_mat", sym):
            return "weight products"
        return "other ggml ops"
    if "libllama" in dso:
        return "llama.cpp"
    if "_native" in dso:
        return "ensemble + CDF + coder"
    if "kernel" in dso:
        return "kernel"
    if re.search(r"python|numpy|_multiarray|ld-linux|libc|unknown|libm", dso):
        return "Python loop"
    return "other"


def _side(mode: str, src: str, nbytes: int, blob_path: str, report: str) -> None:
    """Runs inside perf: one side of the round trip; writes {tokens, seconds} to report."""
    from nacrith.decoder import decompress
    from nacrith.policy import compress
    from nacrith.options import Options
    from nacrith.session import Session

    data = Path(src).read_bytes()[:nbytes]
    session = Session(workers=1)
    session.model.token_bytes
    stats: dict = {}
    t0 = time.perf_counter()
    if mode == "compress":
        blob = compress(data, session, Options(), stats=stats)
        Path(blob_path).write_bytes(blob)
        n = stats["tokens"]
    else:
        if decompress(Path(blob_path).read_bytes(), session) != data:
            raise SystemExit("ROUND TRIP FAILED")
        n = len(session.model.tokenize(data))
    Path(report).write_text(json.dumps(dict(tokens=n, seconds=time.perf_counter() - t0)))


def _perf_buckets(data_file: str) -> dict[str, float]:
    """Percent of samples per bucket (``perf script`` call chains)."""
    out = subprocess.run(["perf", "script", "-i", data_file, "-F", "ip,sym,dso"], capture_output=True,
                         text=True, check=True).stdout
    counts: dict[str, int] = {}
    frames: list[tuple[str, str]] = []
    total = 0
    for line in out.splitlines() + [""]:
        line = line.strip()
        if not line:
            if frames:
                b = bucket(frames)
                counts[b] = counts.get(b, 0) + 1
                total += 1
            frames = []
            continue
        m = re.match(r"[0-9a-f]+\s+(.*?)\s+\((.*)\)$", line)
        if m:
            frames.append((re.sub(r"\+0x[0-9a-f]+$", "", m.group(1)), m.group(2)))
    return {k: 100.0 * v / total for k, v in counts.items()}


@click.command()
@click.argument("path", required=False)
@click.option("--bytes", "nbytes", default=16000, show_default=True)
@click.option("--side", "side_", type=click.Choice(["compress", "decompress"]), hidden=True)
@click.option("--blob", hidden=True)
@click.option("--report", hidden=True)
def main(path, nbytes, side_, blob, report):
    src = Path(path) if path else find_corpora() / "canterbury" / "alice29.txt"
    if side_:
        _side(side_, str(src), nbytes, blob, report)
        return
    if not shutil.which("perf"):
        raise SystemExit("perf not found: apt-get install linux-perf")
    tmp = Path(tempfile.mkdtemp(prefix="nacrith-profile-"))
    row = dict(file=src.name, bytes=nbytes, cpu=cpu_model(), date=time.strftime("%Y-%m-%d"))
    for side in ("compress", "decompress"):
        data_file, rep = str(tmp / f"{side}.perf"), str(tmp / f"{side}.json")
        subprocess.run(["perf", "record", "-F", "199", "--call-graph", "dwarf,8192", "-q", "-o", data_file,
                        "--", sys.executable, __file__,
                        str(src), "--bytes", str(nbytes), "--side", side, "--blob", str(tmp / "blob.nc"),
                        "--report", rep], check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        res = json.loads(Path(rep).read_text())
        shares = _perf_buckets(data_file)
        ms = 1000 * res["seconds"] / res["tokens"]
        row[side] = dict(tokens=res["tokens"], ms_per_token=round(ms, 3),
                         shares={k: round(v, 1) for k, v in sorted(shares.items(), key=lambda kv: -kv[1])})
    shutil.rmtree(tmp, ignore_errors=True)
    append_row(OUT, row)
    table()


def table() -> None:
    rows = read_rows(OUT)
    r = rows[-1]
    names = BUCKETS
    lines = ["# Per-token profile (`bench/profile.py`, perf)", "",
             f"{r['file']}, first {r['bytes']} bytes, default level, one process, {r['cpu']}, {r['date']}. "
             "Share of all samples of the process (every thread) and the per-token time it stands for "
             "(wall time per token x share; spinning threads count, so shares are of CPU time).", "",
             "| where | compress % | compress ms/token | decompress % | decompress ms/token |", "|---|---|---|---|---|"]
    for b in names:
        c, d = r["compress"]["shares"].get(b, 0.0), r["decompress"]["shares"].get(b, 0.0)
        if c or d:
            lines.append(f"| {b} | {c} | {c * r['compress']['ms_per_token'] / 100:.2f} | {d} "
                         f"| {d * r['decompress']['ms_per_token'] / 100:.2f} |")
    lines.append(f"| total (wall) | 100 | {r['compress']['ms_per_token']} | 100 | {r['decompress']['ms_per_token']} |")
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
