"""Executors of the frame scheduler (``nacrith.scheduler``): where whole frames are coded. They
run the function they are given (``fn(engine, *args)``, a module-level function, pickled by
reference) on an Engine (``nacrith.engine``) and know nothing of the codec.

* ``InlineExecutor``: in this process, on the caller's engine.
* ``ProcessExecutor``: ``-T N`` local worker processes, each with its own Engine (model, llama.cpp
  context, ``threads`` threads). Started with ``spawn`` (llama.cpp and OpenMP threads do not
  survive ``fork``).
* ``RayExecutor``: ``--cluster ADDRESS`` (what ``ray.init(address=...)`` takes, or ``local``):
  one Ray actor per worker slot holds an Engine (one GPU each on nodes with GPUs). A frame whose
  actor dies is re-run on another actor.

Before any frame, every worker reports its model sha256 and backend fingerprint; one that
differs from this process's is refused (``ModelMismatchError`` naming the worker and both
fingerprints), so a stream never depends on which worker coded a frame.

An executor has ``slots`` (frames it codes at once), ``live_progress`` (whether it reports
progress while a frame is coded), ``submit(fn, args, progress) -> Future`` whose result is
``(value, worker id)``, and ``ran`` (frames coded per worker).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor

from .engine import Engine
from .errors import ModelMismatchError, NacrithError


class Ran(Counter):
    """Frames coded per worker id (``host:pid``)."""


def done_future(fn, *args) -> Future:
    """A Future already holding ``fn(*args)`` or the exception it raised."""
    f: Future = Future()
    try:
        f.set_result(fn(*args))
    except BaseException as e:  # re-raised, in input order, by the scheduler
        f.set_exception(e)
    return f


RAY_HINT = "--cluster needs Ray: pip install 'nacrith[ray]' (or: pip install 'ray>=2.60')"
MAX_RERUNS = 3  # times one frame is re-run after its actor died


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def identity(engine: Engine) -> tuple[str, str, str]:
    """(worker id, model sha256, backend fingerprint) of an engine."""
    return worker_id(), engine.model.sha256, engine.identity


def check_identity(expect: tuple[str, str], got: tuple[str, str, str]) -> None:
    """Raise ModelMismatchError when a worker's (sha256, fingerprint) is not the driver's."""
    wid, sha, fp = got
    if (sha, fp) != tuple(expect):
        what = (f"model sha256 {sha[:16]}... != {expect[0][:16]}..." if sha != expect[0]
                else f"backend [{fp}] != this machine's [{expect[1]}]")
        raise ModelMismatchError(f"worker {wid} refused: {what}; every worker needs the same model "
                                 "file and llama.cpp build")


class InlineExecutor:
    """Frames coded in this process, at submit time, on the caller's engine."""

    slots = 1
    live_progress = True

    def __init__(self, engine: Engine):
        self.engine = engine
        self.ran = Ran()
        self._id = worker_id()

    def submit(self, fn, args: tuple, progress=None) -> Future:
        return done_future(lambda: (fn(self.engine, *args, progress=progress), self._id))

    def close(self) -> None:
        pass


_engine: Engine | None = None
_refused: Exception | None = None


def _init(model_path: str, threads: int, gpu_layers: int, expect: tuple[str, str]) -> None:
    global _engine, _refused
    _engine = Engine(model_path, threads=threads, gpu_layers=gpu_layers)
    _engine.model.token_bytes  # load now, not inside the first job
    try:
        check_identity(expect, identity(_engine))
    except ModelMismatchError as e:
        _refused = e


def _work(fn, args: tuple):
    if _refused is not None:
        raise _refused
    return fn(_engine, *args), worker_id()


class ProcessExecutor:
    """``n`` local worker processes with ``threads`` llama.cpp threads each."""

    live_progress = False

    def __init__(self, model_path: str, n: int, threads: int, gpu_layers: int, expect: tuple[str, str]):
        self.slots = n
        self.ran = Ran()
        self._ex = ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"),
                                       initializer=_init, initargs=(model_path, threads, gpu_layers, expect))

    def submit(self, fn, args: tuple, progress=None) -> Future:
        return self._ex.submit(_work, fn, args)

    def close(self) -> None:
        self._ex.shutdown(wait=True, cancel_futures=True)


class FrameActor:
    """A Ray actor: one model and context (an Engine), coding whole frames."""

    def __init__(self, model_path: str, threads: int, gpu_layers: int):
        self.engine = Engine(model_path, threads=threads, gpu_layers=gpu_layers)

    def identity(self):
        return identity(self.engine)

    def work(self, fn, args: tuple):
        return fn(self.engine, *args), worker_id()


def _ray():
    try:
        import ray
    except ImportError:
        raise NacrithError(RAY_HINT) from None
    return ray


class _RayFuture:
    """A frame on an actor; re-run on another actor when that one dies."""

    def __init__(self, ex: "RayExecutor", fn, args: tuple):
        self.ex, self.fn, self.args, self.reruns = ex, fn, args, 0
        self._start()

    def _start(self) -> None:
        self.actor = self.ex._pick()
        self.ex._load[self.actor] += 1
        self.ref = self.ex._actors[self.actor].work.remote(self.fn, self.args)

    def done(self) -> bool:
        return bool(self.ex.ray.wait([self.ref], timeout=0)[0])

    def result(self):
        ray = self.ex.ray
        while True:
            try:
                value = ray.get(self.ref)
                self.ex._load[self.actor] -= 1
                return value
            except (ray.exceptions.RayActorError, ray.exceptions.ActorDiedError,
                    ray.exceptions.ActorUnavailableError):
                self.ex._lost(self.actor)
                self.reruns += 1
                if self.reruns > MAX_RERUNS:
                    raise NacrithError(f"frame lost {self.reruns} workers in a row; giving up") from None
                self._start()
            except ray.exceptions.RayTaskError as e:  # the frame's own error (corrupt input, ...)
                self.ex._load[self.actor] -= 1
                cause = getattr(e, "cause", None)
                raise (cause if isinstance(cause, Exception) else NacrithError(str(e).splitlines()[-1])) from None


class RayExecutor:
    """Frames on Ray actors: ``address`` as ``ray.init(address=...)`` takes it, or ``local``
    (start a Ray instance on this machine with its cores). ``n``: actors (default: the cluster's
    GPUs when it has any, one GPU each, else its CPUs // ``threads``).

    Raises NacrithError (Ray missing or unreachable), ModelMismatchError (a worker differs)."""

    live_progress = False

    def __init__(self, address: str, model_path: str, n: int | None, threads: int, gpu_layers: int,
                 expect: tuple[str, str]):
        import logging

        ray = self.ray = _ray()
        if not ray.is_initialized():
            try:
                if address == "local":
                    from .model import default_threads

                    ray.init(num_cpus=default_threads(), include_dashboard=False, log_to_driver=False,
                             logging_level=logging.ERROR, configure_logging=False)
                else:
                    ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR,
                             configure_logging=False)
            except Exception as e:
                raise NacrithError(f"cannot reach Ray cluster {address!r}: {str(e).splitlines()[0]}") from None
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        self._opts = {"num_cpus": threads, "num_gpus": 1 if gpus else 0, "max_restarts": 0}
        self.slots = n or (gpus if gpus else max(1, int(res.get("CPU", 1)) // threads))
        self._args = (model_path, threads, -1 if gpus and gpu_layers == 0 else gpu_layers)
        self._expect = expect
        self._Actor = ray.remote(FrameActor)
        self._actors: dict[int, object] = {}
        self._load: dict[int, int] = {}
        self._next = 0
        self.reruns = 0  # frames re-run after their actor died
        self.ran = Ran()
        self._spawn(self.slots)

    def _spawn(self, k: int) -> None:
        new = {}
        for _ in range(k):
            new[self._next] = self._Actor.options(**self._opts).remote(*self._args)
            self._next += 1
        ids = self.ray.get([a.identity.remote() for a in new.values()])
        for got in ids:
            check_identity(self._expect, got)
        self._actors.update(new)
        self._load.update({i: 0 for i in new})

    def _pick(self) -> int:
        if not self._actors:
            self._spawn(1)
        return min(self._load, key=lambda i: (self._load[i], i))

    def _lost(self, i: int) -> None:
        self.reruns += 1
        self._actors.pop(i, None)
        self._load.pop(i, None)

    def actors(self) -> list:
        """The live actor handles (tests kill one to check re-runs)."""
        return list(self._actors.values())

    def submit(self, fn, args: tuple, progress=None) -> _RayFuture:
        return _RayFuture(self, fn, args)

    def close(self) -> None:
        for a in self._actors.values():
            try:
                self.ray.kill(a)
            except Exception:
                pass
        self._actors.clear()
