"""atheris harness for longer decode-fuzzing campaigns (coverage-guided).

    pip install atheris
    .venv/bin/python tests/fuzz/fuzz_decode.py codec/vectors/valid/ -max_total_time=3600

Any exception other than a NacrithError is a crash; a decode that returns bytes that do not
match the stream's own checksums cannot happen (every frame is verified), so a returned value is
checked against a second, independent decode.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import atheris  # noqa: E402

with atheris.instrument_imports():
    from nacrith.session import Session
    from nacrith.decoder import decompress
    from nacrith.errors import NacrithError

SESSION = Session(threads=1, workers=1)


def test_one_input(data: bytes) -> None:
    try:
        out = decompress(data, SESSION)
    except NacrithError:
        return
    assert decompress(data, SESSION) == out


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
