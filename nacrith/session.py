"""The public ``Session``: an Engine (``nacrith.engine``: the loaded model, llama.cpp contexts and
checks) with the executors that code frames (``nacrith.executors``: this process, worker
processes, Ray actors), reused across calls: load once, code many.
"""

from __future__ import annotations

import os

from .engine import Engine
from .model import Model, default_parallelism, default_threads
from .options import Execution

# re-exported for the API (``nacrith.session.Options`` before Options had a module of its own)
from .options import DEFAULT_LEVEL, LEVELS, Options  # noqa: F401


class Session(Engine):
    """A loaded model, llama.cpp contexts and the frame executor.

    Args:
        model: GGUF path (``None``: ``NACRITH_MODEL``, else the embedded default) or a loaded
            ``Model``.
        threads: llama.cpp threads per worker (default: the cores this process may use, shared
            among the workers).
        workers: frames coded at once: 1 codes them in this process; N > 1 starts N worker
            processes (or N Ray actors with ``cluster``), each with its own model and context.
            Default: from the cores (``default_parallelism``). An execution choice, never
            recorded in the stream.
        gpu_layers: layers offloaded to a GPU backend (0: CPU, -1: all; default: all when the
            llama.cpp build has a GPU backend, else 0; when not given, a decoder switches to the
            offload a stream records, so decoding needs no flag).
        cluster: run frames on Ray: an address as ``ray.init(address=...)`` takes it (``auto``,
            ``ray://host:10001``) or ``local`` (a Ray instance on this machine); default
            ``$NACRITH_CLUSTER``, else none.
        execution: execution switches (``nacrith.options.Execution``: drafts), no bit changes.

    The model is loaded on first use, so decoding streams without LLM frames needs none.
    Raises TypeError for arguments of the wrong type, ValueError for workers < 1 or threads < 1.
    """

    def __init__(self, model: str | os.PathLike | Model | None = None, *, threads: int | None = None,
                 workers: int | None = None, gpu_layers: int | None = None, cluster: str | None = None,
                 execution: Execution | None = None):
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool)):
            raise TypeError(f"workers must be an int, not {type(workers).__name__}")
        if workers is not None and workers < 1:
            raise ValueError("workers must be >= 1")
        super().__init__(model, threads=threads, gpu_layers=gpu_layers, execution=execution)
        self.cluster = cluster if cluster is not None else (os.environ.get("NACRITH_CLUSTER") or None)
        auto_workers, auto_threads = default_parallelism()
        if self.cluster:
            self.workers = int(workers) if workers else None  # None: from the cluster's resources
            self.threads = int(threads) if threads else 1
        else:
            self.workers = int(workers) if workers else (auto_workers if not threads else 1)
            self.threads = int(threads) if threads else max(1, auto_threads if self.workers == auto_workers
                                                           else default_threads() // self.workers)
        self._executor = None
        self._inline = None

    def inline(self):
        """The executor that codes frames in this process."""
        self.check_open()
        if self._inline is None:
            from .executors import InlineExecutor

            self._inline = InlineExecutor(self)
        return self._inline

    def executor(self):
        """Where frames run (``nacrith.executors``): in this process with one worker and no
        cluster, else worker processes or Ray actors (started on first use, each loading the
        model once and checked against this process's model and backend)."""
        self.check_open()
        if self._executor is None:
            if not self.cluster and self.workers == 1:
                self._executor = self.inline()
            else:
                from . import executors

                expect = (self.model.sha256, self.identity)
                path = str(self.model.path)
                gpu = self.gpu_layers if self.gpu_explicit else None
                if self.cluster:
                    self._executor = executors.RayExecutor(self.cluster, path, self.workers, self.threads, gpu, expect)
                else:
                    self._executor = executors.ProcessExecutor(path, self.workers, self.threads, gpu, expect)
        return self._executor

    def scheduler(self, progress=None):
        """A frame scheduler (``nacrith.scheduler``) on this session's executors."""
        from .scheduler import Scheduler

        self.check_open()
        return Scheduler(self.inline(), self.executor, progress)

    def close(self) -> None:
        """Stop the workers and free the model and contexts; later use raises ValueError."""
        if self._executor is not None:
            self._executor.close()
            self._executor = None
        super().close()
