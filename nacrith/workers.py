"""Worker processes: each holds its own model and llama.cpp context and codes whole lanes.

The number of workers is an execution choice, never a format parameter: a lane's stream does
not depend on which lanes share its context (``tests/test_invariance.py``), so a file made with
W workers decodes with any other W. Processes are started with ``spawn`` (llama.cpp and OpenMP
threads do not survive ``fork``).
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

from .llm_frame import decode_group, encode_group
from .session import Session

_session = None


def _init(model_path: str, threads: int, gpu_layers: int) -> None:
    global _session
    _session = Session(model_path, threads=threads, workers=1, gpu_layers=gpu_layers)
    _session.model.token_bytes  # load now, not inside the first job


def _encode(job):
    lanes, window, ensemble, batch, escapes = job
    stats: dict = {}
    return encode_group(_session, lanes, window, ensemble, batch, stats=stats, escapes=escapes), stats


def _decode(job):
    streams, counts, window, ensemble, max_bytes, where = job
    return decode_group(_session, streams, counts, window, ensemble, max_bytes, where)


class WorkerPool:
    """``n`` worker processes with ``threads`` llama.cpp threads each."""

    def __init__(self, model_path: str, n: int, threads: int, gpu_layers: int = 0):
        self.n = n
        self._ex = ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"),
                                       initializer=_init, initargs=(model_path, threads, gpu_layers))

    def map(self, kind: str, jobs: list) -> list:
        """Run ``encode``/``decode`` jobs in the workers; results in job order. A worker's
        exception (e.g. ChecksumError) is re-raised here."""
        fn = {"encode": _encode, "decode": _decode}[kind]
        return list(self._ex.map(fn, jobs))

    def close(self) -> None:
        self._ex.shutdown(wait=True, cancel_futures=True)
