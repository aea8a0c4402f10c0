"""Shared fixtures: the corpora folder and one real model session for the whole test run."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.common import find_corpora

ROOT = Path(__file__).resolve().parents[1]


CORPORA = find_corpora()


def corpus(rel: str) -> bytes:
    """Bytes of a file of the shared corpora (``../shared/corpora/<rel>``)."""
    p = CORPORA / rel
    if not p.is_file():
        pytest.fail(f"corpus file {p} is missing (set NACRITH_CORPORA)")
    return p.read_bytes()


@pytest.fixture(scope="session")
def session():
    """One real llama.cpp session on the default model, shared by all tests."""
    from nacrith.session import Session

    s = Session()
    s.model  # load now: a missing model fails here, loudly
    yield s
    s.close()
