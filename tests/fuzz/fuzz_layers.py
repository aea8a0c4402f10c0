"""atheris harness of the per-layer targets (tests/fuzz/targets.py), for long coverage-guided
campaigns that need no model:

    pip install atheris
    .venv/bin/python tests/fuzz/fuzz_layers.py parser codec/vectors/valid/ -max_total_time=3600

The first argument names the target (parser, params, arith, lzma2); the rest go to libFuzzer.
Any exception other than the layer's FormatError, or a failed check, is a finding.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import atheris  # noqa: E402

with atheris.instrument_imports():
    from tests.fuzz.targets import TARGETS

if __name__ == "__main__":
    name = sys.argv.pop(1)
    atheris.Setup(sys.argv, TARGETS[name])
    atheris.Fuzz()
