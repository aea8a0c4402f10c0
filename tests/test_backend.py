"""The backend fingerprint: what a stream records of the build and device it was coded on."""

from __future__ import annotations

from nacrith import backend
from nacrith.params import FAST_ATTENTION

CUDA_INFO = ("CUDA : ARCHS = 900 | USE_GRAPHS = 1 | PEER_MAX_BATCH_SIZE = 128 | CPU : SSE3 = 1 | SSSE3 = 1 | "
             "AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | ")


def test_sections_of_a_gpu_build():
    secs = backend.backend_sections(CUDA_INFO)
    assert [n for n, _ in secs] == ["CUDA", "CPU"]
    assert secs[0][1]["ARCHS"] == "900" and secs[1][1]["AVX2"] == "1"


def test_a_cpu_stream_of_a_gpu_build_has_the_cpu_builds_fingerprint(monkeypatch):
    """A stream coded on the CPU records the CPU backend alone: it decodes on a GPU build of the
    same llama.cpp and flags; a GPU stream records every backend and the GPUs by name."""
    cpu_only = backend.fingerprint(None, FAST_ATTENTION, gpu=False)
    monkeypatch.setattr(backend, "system_info", lambda: " ".join(CUDA_INFO.split()))
    import nacrith.runtime

    monkeypatch.setattr(nacrith.runtime, "gpu_devices", lambda: ["NVIDIA H100 80GB HBM3"])
    assert backend.fingerprint(None, FAST_ATTENTION, gpu=False) == cpu_only
    on_gpu = backend.fingerprint(None, FAST_ATTENTION, gpu=True)
    assert "CUDA ARCHS USE_GRAPHS PEER_MAX_BATCH_SIZE" in on_gpu and "gpu=NVIDIA H100 80GB HBM3" in on_gpu
    assert on_gpu != cpu_only


def test_the_default_preset_fingerprint_is_unchanged():
    from nacrith.format import BACKEND_PRESETS

    assert backend.fingerprint(None, FAST_ATTENTION, gpu=False) == BACKEND_PRESETS[2]


def test_layers_on_a_gpu_always_get_the_lockstep_schedule_and_the_stream_records_it(monkeypatch):
    """A model with layers offloaded is never probed and never encoded in batches (CUDA kernels
    are chosen by batch shape); the params record the offload and the schedule, so the decoder
    follows it. Shown without a GPU by marking the loaded model's layers as offloaded."""
    import pytest

    from nacrith import probe
    from nacrith.engine import Engine
    from nacrith.errors import BackendError
    from nacrith.format import SCHEDULE_LOCKSTEP
    from nacrith.llm_frame import lockstep_params
    from nacrith.options import Options

    with Engine(threads=1, gpu_layers=0) as e:
        assert e.resolve(Options()).schedule == "batched"  # the same model on the CPU: probed batched
        e._verdicts.clear()
        monkeypatch.setattr(e.model, "n_gpu_layers", 5)
        monkeypatch.setattr(probe, "verdict", lambda *a, **k: pytest.fail("a GPU model was probed"))
        opts = e.resolve(Options())
        assert opts.schedule == "lockstep"
        p = e.params(opts)
        assert p.schedule == SCHEDULE_LOCKSTEP and p.offload == 5 and lockstep_params(p)
        with pytest.raises(BackendError, match="not proven"):
            e.resolve(Options(schedule="batched"))
