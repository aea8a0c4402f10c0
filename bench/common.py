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
