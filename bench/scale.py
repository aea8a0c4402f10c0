"""Frames in parallel: wall time and peak RSS per process of compress + decompress with each
executor, and the peak RSS of a streaming pipeline against the frame count (issue 17).

    python bench/scale.py executors [--bytes 32768 --frame-size 8192]  # 1x2, 2x1, cluster local
    python bench/scale.py stream [--frame-size 16384]                  # cat | nacrith -c | nacrith -dc
    python bench/scale.py frames [--bytes 65536 --sizes 8192,...]     # bpb against the frame size

Each executor configuration runs in a fresh process (so its RSS is its own); every row is a
verified round trip, and the outputs of all configurations must be byte-identical. Rows are
appended to bench/results/scale.jsonl and the table bench/results/scale.md is rewritten. Run
on a quiet machine: llama.cpp threads spin, so anything beside the benchmark skews it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import append_row, cpu_model, find_corpora, read_rows  # noqa: E402

OUT = ROOT / "bench" / "results" / "scale.jsonl"
CONFIGS = {  # name: (workers, threads, cluster)
    "1 process x 2 threads": (1, 2, None),
    "2 processes x 1 thread": (2, 1, None),
    "Ray local, 2 actors x 1 thread": (2, 1, "local"),
}


def _hwm(pid: int) -> int:
    """Peak resident set (VmHWM) of a live process, KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_one(name: str, data: bytes, frame_size: int) -> dict:
    """Compress and decompress ``data`` with configuration ``name`` in this process."""
    from nacrith.decoder import decompress
    from nacrith.policy import compress
    from nacrith.options import Options
    from nacrith.session import Session

    workers, threads, cluster = CONFIGS[name]
    s = Session(workers=workers, threads=threads, cluster=cluster)
    opts = Options(frame_size=frame_size)
    ex = s.executor()
    t = time.perf_counter()
    blob = compress(data, s, opts)
    t_c = time.perf_counter() - t
    t = time.perf_counter()
    ok = decompress(blob, s) == data
    t_d = time.perf_counter() - t
    pids = sorted({int(w.rsplit(":", 1)[1]) for w in ex.ran} - {os.getpid()})
    rss = {"driver": _hwm(os.getpid()) // 1024, "workers": [_hwm(p) // 1024 for p in pids]}
    s.close()
    return dict(config=name, bytes=len(data), frame_size=frame_size, frames=-(-len(data) // frame_size),
                size=len(blob), bpb=round(8 * len(blob) / len(data), 4), sha256=hashlib.sha256(blob).hexdigest()[:16],
                compress_s=round(t_c, 1), decompress_s=round(t_d, 1), ok=ok, workers_used=len(ex.ran),
                peak_rss_mib=rss)


@click.group()
def main():
    """Scale-out benchmarks."""


@main.command("one", hidden=True)
@click.argument("name")
@click.argument("path")
@click.argument("nbytes", type=int)
@click.argument("frame_size", type=int)
def one(name, path, nbytes, frame_size):
    print(json.dumps(run_one(name, Path(path).read_bytes()[:nbytes], frame_size)))


@main.command()
@click.option("--input", "path", default=str(find_corpora() / "enwik" / "enwik6"), show_default=True)
@click.option("--bytes", "nbytes", default=32768, show_default=True)
@click.option("--frame-size", default=8192, show_default=True)
def executors(path, nbytes, frame_size):
    """Each executor configuration on the same input; outputs must be identical."""
    rows = []
    for name in CONFIGS:
        r = subprocess.run([sys.executable, __file__, "one", name, path, str(nbytes), str(frame_size)],
                           capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"{name}: failed\n{r.stderr[-2000:]}")
        row = json.loads(r.stdout.strip().splitlines()[-1])
        row.update(suite="executors", input=f"{Path(path).name}[:{nbytes}]", cpu=cpu_model(),
                   cores=len(os.sched_getaffinity(0)), date=time.strftime("%Y-%m-%d"))
        append_row(OUT, row)
        rows.append(row)
    if len({r["sha256"] for r in rows}) != 1 or not all(r["ok"] for r in rows):
        raise SystemExit("outputs differ between executors or a round trip failed")
    write_table()


@main.command()
@click.option("--input", "path", default=str(find_corpora() / "enwik" / "enwik6"), show_default=True)
@click.option("--frame-size", default=16384, show_default=True)
@click.option("--frames", default="4,16", show_default=True, help="Frame counts to compare.")
def stream(path, frame_size, frames):
    """Peak RSS of each process of cat | nacrith -c | nacrith -dc | cmp, per frame count."""
    src = Path(path).read_bytes()
    nc = [sys.executable, "-m", "nacrith", "-q", "--threads", "1", "--frame-size", str(frame_size)]
    for k in (int(x) for x in frames.split(",")):
        data = src[:k * frame_size]
        tmp = Path(f"/tmp/nacrith-scale-{k}.in")
        tmp.write_bytes(data)
        t = time.perf_counter()
        cat = subprocess.Popen(["cat", str(tmp)], stdout=subprocess.PIPE)
        enc = subprocess.Popen(nc + ["-c"], stdin=cat.stdout, stdout=subprocess.PIPE)
        dec = subprocess.Popen(nc + ["-dc"], stdin=enc.stdout, stdout=subprocess.PIPE)
        cmp = subprocess.Popen(["cmp", "-", str(tmp)], stdin=dec.stdout)
        for p in (cat, enc, dec):
            p.stdout.close()
        rss = {}
        for name, p in (("compress", enc), ("decompress", dec)):
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            rss[name] = ru.ru_maxrss // 1024
        cat.wait()
        ok = cmp.wait() == 0 and enc.returncode == 0 and dec.returncode == 0
        tmp.unlink()
        row = dict(suite="stream", input=Path(path).name, frames=k, frame_size=frame_size, bytes=len(data),
                   ok=ok, seconds=round(time.perf_counter() - t, 1), peak_rss_mib=rss, cpu=cpu_model(),
                   date=time.strftime("%Y-%m-%d"))
        append_row(OUT, row)
        if not ok:
            raise SystemExit(f"{k} frames: pipeline failed")
    write_table()


@main.command()
@click.option("--input", "path", default=str(find_corpora() / "enwik" / "enwik6"), show_default=True)
@click.option("--bytes", "nbytes", default=65536, show_default=True)
@click.option("--sizes", default="8192,16384,32768,65536", show_default=True)
def frames(path, nbytes, sizes):
    """bpb of one input against the frame size (every frame restarts the context and the heads);
    one process, one thread, each stream decoded and compared."""
    from nacrith.decoder import decompress
    from nacrith.policy import compress
    from nacrith.options import Options
    from nacrith.session import Session

    data = Path(path).read_bytes()[:nbytes]
    s = Session(workers=1, threads=1)
    for fs in (int(x) for x in sizes.split(",")):
        st: dict = {}
        t = time.perf_counter()
        blob = compress(data, s, Options(frame_size=fs), stats=st)
        tc = time.perf_counter() - t
        if decompress(blob, s) != data:
            raise SystemExit(f"frame size {fs}: ROUND TRIP FAILED")
        append_row(OUT, dict(suite="frames", input=f"{Path(path).name}[:{nbytes}]", frame_size=fs,
                             frames=-(-len(data) // fs), size=len(blob), bpb=round(8 * len(blob) / len(data), 4),
                             tokens=st.get("tokens"), compress_s=round(tc, 1), verified=True,
                             date=time.strftime("%Y-%m-%d")))
    write_table()


def write_table() -> None:
    rows = read_rows(OUT) if OUT.exists() else []
    lines = ["# Scale-out benchmark (`bench/scale.py`)", "",
             "Executor and stream rows are verified round trips and executor rows of one input give identical bytes.", "",
             "## Executors", "",
             "| date | input | frames | config | compress s | decompress s | bpb | peak RSS MiB: driver / workers |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["suite"] == "executors":
            rss = r["peak_rss_mib"]
            lines.append(f"| {r['date']} | {r['input']} | {r['frames']} x {r['frame_size']} | {r['config']} | "
                         f"{r['compress_s']} | {r['decompress_s']} | {r['bpb']} | {rss['driver']} / "
                         f"{', '.join(map(str, rss['workers'])) or '-'} |")
    lines += ["", "## Streaming pipeline: `cat | nacrith -c | nacrith -dc | cmp`", "",
              "| date | input | frames | s | peak RSS MiB compress | peak RSS MiB decompress |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r["suite"] == "stream":
            lines.append(f"| {r['date']} | {r['input']} | {r['frames']} x {r['frame_size']} | {r['seconds']} | "
                         f"{r['peak_rss_mib']['compress']} | {r['peak_rss_mib']['decompress']} |")
    lines += ["", "## bpb against the frame size (each frame restarts the context and the heads)", "",
              "| date | input | frame size | frames | bytes out | bpb | compress s (1 thread) | decoded and compared |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["suite"] == "frames":
            lines.append(f"| {r['date']} | {r['input']} | {r['frame_size']} | {r['frames']} | {r['size']} | "
                         f"{r['bpb']} | {r['compress_s']} | {'yes' if r.get('verified') else 'no'} |")
    (OUT.parent / "scale.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
