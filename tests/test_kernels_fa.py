"""nacrith's patched flash-attention kernel (native/llama/): its standalone harness, and that the
installed llama.cpp build carries it (install.sh applies the patch unless NACRITH_STOCK_LLAMA=1)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nacrith.model import FAST_ATTENTION, FAST_KERNEL, attention_kernel, available, default_attention

NATIVE = Path(__file__).resolve().parents[1] / "native" / "llama"


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None, reason="needs gcc and make")
def test_kernel_harness_accuracy_and_bit_invariance(tmp_path):
    """(a) error against a float64 softmax attention, (b) every output row bit-identical alone and
    grouped / reordered / threaded / over padded and interleaved cell layouts."""
    r = subprocess.run(["make", "-s", "-C", str(NATIVE), "test", f"BUILD={tmp_path}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "all checks passed" in r.stdout
    assert "DIFFERS" not in r.stdout.upper()


@pytest.mark.skipif(os.environ.get("NACRITH_STOCK_LLAMA") == "1", reason="stock llama.cpp build requested")
def test_installed_build_has_the_kernel_and_uses_it_by_default():
    assert attention_kernel() == FAST_KERNEL, "llama.cpp was built without native/llama/nacrith-fa.patch"
    assert available(FAST_ATTENTION)
    assert default_attention(gpu=False) == FAST_ATTENTION
    assert default_attention(gpu=True).kernel == ""


@pytest.mark.skipif(os.environ.get("NACRITH_STOCK_LLAMA") == "1", reason="stock llama.cpp build requested")
def test_backend_check_prints_the_fingerprint_streams_record(capsys):
    """``python -m nacrith.backend --check`` (install.sh's last line) names the default mode's
    fingerprint (the patched kernel's), not the q8_0 reference mode's."""
    from nacrith import backend

    assert backend.main(["--check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("backend ok: ") and "kv=f16/bf16 kernel=nacrith-fa-1" in out, out
