"""Conformance vectors in codec/vectors (see codec/FORMAT.md): valid ones decode to their
originals, invalid ones are rejected with a NacrithError."""

from __future__ import annotations

from pathlib import Path

import pytest

from nacrith.decoder import decompress
from nacrith.errors import NacrithError

VEC = Path(__file__).resolve().parents[1] / "codec" / "vectors"
VALID = sorted((VEC / "valid").glob("*.nc"))
INVALID = sorted((VEC / "invalid").glob("*.nc"))


def test_vectors_present():
    assert len(VALID) >= 6 and len(INVALID) >= 10
    assert any(p.name.startswith("v2-") for p in VALID) and any(p.name.startswith("v2-") for p in INVALID)


def test_every_vector_does_what_its_name_says(session):
    """``codec/make_vectors.py --check``: each invalid vector is rejected with the error its name
    says (total-checksum: the whole-stream checksum, not the end magic), each valid one has the
    structure it is named for (several frames with a seek table, lanes, linear mixer, presets)."""
    import sys

    sys.path.insert(0, str(VEC.parent))
    try:
        import make_vectors
    finally:
        sys.path.remove(str(VEC.parent))
    assert make_vectors.check_vectors(session) == []


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_vector_decodes(session, path):
    assert decompress(path.read_bytes(), session) == path.with_suffix("").read_bytes()


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_vector_rejected(session, path):
    with pytest.raises(NacrithError):
        decompress(path.read_bytes(), session)
