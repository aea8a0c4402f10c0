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
