"""Helpers shared by the benchmark scripts and the tests."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def find_corpora() -> Path:
    """``$NACRITH_CORPORA``, else the first ``shared/corpora`` beside the checkout or above it."""
    if os.environ.get("NACRITH_CORPORA"):
        return Path(os.environ["NACRITH_CORPORA"])
    for d in ROOT.parents:
        if (d / "shared" / "corpora").is_dir():
            return d / "shared" / "corpora"
    return ROOT.parent / "shared" / "corpora"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else platform.processor()."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def append_row(path: Path, row: dict) -> None:
    """Print ``row`` as JSON and append it as one line to ``path`` (a .jsonl results file)."""
    import json

    print(json.dumps(row), flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def read_rows(path: Path) -> list[dict]:
    """The rows of a .jsonl results file, in order."""
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def peak_rss_mb() -> float:
    """Peak resident memory of this process or its largest child so far, MiB."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, kids) / 1024, 1)


def timed_round_trip(session, data: bytes, options, label: str = "", strict: bool = True) -> dict:
    """Compress then decompress ``data`` with nacrith, check the bytes, time both sides.

    Returns dict(blob, compress_s, decompress_s, tokens (LLM-coded), bpb, stats (the encoder's
    stats dict), identical). Exits on a failed round trip (a benchmark row is only ever a verified
    one) unless not ``strict`` (the device check records the failure and goes on)."""
    import time

    from nacrith.decoder import decompress
    from nacrith.policy import compress

    stats: dict = {}
    t0 = time.perf_counter()
    blob = compress(data, session, options, stats=stats)
    t1 = time.perf_counter()
    back = decompress(blob, session)
    t2 = time.perf_counter()
    if back != data and strict:
        raise SystemExit(f"ROUND TRIP FAILED {label}")
    return dict(blob=blob, compress_s=t1 - t0, decompress_s=t2 - t1, tokens=stats.get("tokens", 0),
                bpb=8 * len(blob) / max(1, len(data)), stats=stats, identical=back == data)


def context(session, options) -> dict:
    """The fields every benchmark row records: the model, the backend, the resolved options (in
    brief), and whether they are today's default level (``default``: False marks a row that must
    never be shown as the current default)."""
    from dataclasses import asdict

    from nacrith.backend import fingerprint
    from nacrith.model import ATTENTION_MODES
    from nacrith.options import Options

    opts = session.resolve(options)
    base = session.resolve(Options())
    diff = {k: v for k, v in asdict(opts).items() if asdict(base).get(k) != v and k not in ("verify", "batch")}
    return dict(model=session.model.label, model_sha256=session.model.sha256[:16],
                backend=fingerprint(session.model.n_gpu_layers, ATTENTION_MODES[opts.attention],
                                    session.model.kernel_record),
                schedule=opts.schedule, options=diff or "default", default=not diff)
