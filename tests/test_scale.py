"""Frames in parallel: the frame scheduler with local worker processes and a real local Ray
instance (2 CPUs). Every output must be byte-identical to the one-process stream, and the
workers must really have run (``executor.ran`` counts frames per worker process)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nacrith import decoder, policy
from nacrith.errors import ModelMismatchError, NacrithError
from nacrith.options import Options
from nacrith.session import Session

from .conftest import corpus

OPTS = Options(frame_size=700)


@pytest.fixture(scope="module")
def text():
    return corpus("canterbury/alice29.txt")[2000:4100]  # 3 frames of 700 bytes


@pytest.fixture(scope="module")
def reference(session, text):
    blob = policy.compress(text, session, OPTS)
    assert blob.count(b"\x03") >= 1
    return blob


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    import logging

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             configure_logging=False)
    yield ray
    ray.shutdown()


def _llm_frames(blob: bytes) -> int:
    from nacrith.format import FRAME_LLM, Frame, iter_frames

    return sum(isinstance(f, Frame) and f.kind == FRAME_LLM for f in iter_frames(blob))


def test_two_local_workers_give_the_same_bytes_and_both_run(reference, text):
    assert _llm_frames(reference) == 3
    with Session(workers=2, threads=1) as s:
        assert policy.compress(text, s, OPTS) == reference
        ran = s.executor().ran
        assert len(ran) == 2 and sum(ran.values()) == 3
        # decoded by the same pool, then by this process: the stream does not know who made it
        assert decoder.decompress(reference, s) == text
        assert sum(ran.values()) == 6


def test_one_frame_is_coded_in_this_process(session, text):
    """A frame too small to share keeps today's path: no worker is started for it."""
    one = text[:600]
    want = policy.compress(one, session, OPTS)
    with Session(workers=2, threads=1) as s:
        assert policy.compress(one, s, OPTS) == want and decoder.decompress(want, s) == one
        assert s._executor is None and sum(s.inline().ran.values()) == 2


def test_workers_beyond_the_frame_count(session, reference, text):
    with Session(workers=4, threads=1) as s:
        assert policy.compress(text, s, OPTS) == reference
        assert sum(s.executor().ran.values()) == 3
    assert decoder.decompress(reference, session) == text


def test_a_worker_with_another_backend_is_refused_before_any_output(text, monkeypatch):
    s = Session(workers=2, threads=1)
    try:
        s.fingerprint  # this process's fingerprint, before the override reaches the workers
        monkeypatch.setenv("NACRITH_BACKEND_FINGERPRINT", "some other build")
        enc = policy.GuardedEncoder(s, OPTS)
        with pytest.raises(ModelMismatchError, match=r"worker .*:\d+ refused: backend \[some other build; kernel=\w[^]]*\]"):
            out = enc.feed(text)
            assert out == b""  # nothing was written before the refusal
            enc.finish()
    finally:
        s.close()


def test_ray_local_cluster_same_bytes_and_both_actors_run(ray_local, session, reference, text):
    with Session(cluster="local", threads=1) as s:
        ex = s.executor()
        assert ex.slots == 2
        assert policy.compress(text, s, OPTS) == reference
        assert len(ex.ran) == 2 and sum(ex.ran.values()) == 3
        assert decoder.decompress(reference, s) == text
    # made on Ray, decoded in this process
    assert decoder.decompress(reference, session) == text


def test_ray_actor_killed_mid_run_its_frame_is_rerun(ray_local, session, text):
    opts = Options(frame_size=350)  # 6 frames: the killed actor still holds a queued one
    want = policy.compress(text, session, opts)
    with Session(cluster="local", threads=1) as s:
        ex = s.executor()
        victim = ex.actors()[1]
        killed = []

        def progress(n):  # called as results arrive: the first one kills the second actor
            if not killed:
                killed.append(ray_local.kill(victim) or True)

        assert policy.compress(text, s, opts, progress=progress) == want
        assert killed and ex.reruns >= 1 and len(ex.actors()) == 1


def test_ray_worker_with_another_fingerprint_is_refused(ray_local, session):
    from nacrith.executors import RayExecutor

    with pytest.raises(ModelMismatchError, match=r"worker .* refused: backend \[.*\] != this machine's \[other\]"):
        RayExecutor("local", str(session.model.path), 2, 1, 0, (session.model.sha256, "other"))


def test_cluster_without_ray_says_how_to_install(session, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with Session(cluster="local", threads=1) as s, pytest.raises(NacrithError, match=r"pip install 'nacrith\[ray\]'"):
        s.executor()


def test_cli_cluster_local_round_trip(tmp_path, reference, text):
    pytest.importorskip("ray")
    src = tmp_path / "a.txt"
    src.write_bytes(text)
    run = [sys.executable, "-m", "nacrith", "-q", "--threads", "1"]
    r = subprocess.run(run + ["--cluster", "local", "--frame-size", "700", str(src)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a.txt.nc").read_bytes() == reference
    src.unlink()
    r = subprocess.run(run + ["-T", "2", "-d", str(tmp_path / "a.txt.nc")], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert src.read_bytes() == text


def test_cli_passes_workers_threads_and_gpu_layers_to_a_real_session(tmp_path, monkeypatch, reference, text):
    """The CLI's -T/--threads/--gpu-layers reach the Session it opens, and -T 2 really codes the
    frames on two worker processes (the Session is the real one, only watched)."""
    from click.testing import CliRunner

    from nacrith import cli
    from nacrith.cli import options as cli_options

    seen = []

    class Watched(Session):
        def close(self):
            seen.append((self.workers, self.threads, self.gpu_layers,
                         dict(self._executor.ran) if self._executor else {}))
            super().close()

    monkeypatch.setattr(cli_options, "Session", Watched)
    src = tmp_path / "a.txt"
    src.write_bytes(text)
    r = CliRunner().invoke(cli.main, ["-q", "-T", "2", "--threads", "1", "--gpu-layers", "0",
                                      "--frame-size", "700", str(src)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.txt.nc").read_bytes() == reference
    (workers, threads, gpu_layers, ran), = seen
    assert (workers, threads, gpu_layers) == (2, 1, 0) and len(ran) == 2 and sum(ran.values()) == 3
