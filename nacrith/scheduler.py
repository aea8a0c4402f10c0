"""The frame scheduler: whole frames go to an executor, results come back in input order, with a
bounded number of frames in flight (memory stays flat whatever the input length).

Frames are independent (each starts its own lanes, heads and LLM context), so where a frame is
coded does not change its bytes: a stream never records how it was made. Executors
(``nacrith.workers``): ``InlineExecutor`` (this process), ``ProcessExecutor`` (``-T N`` local
worker processes), ``RayExecutor`` (``--cluster``: one Ray actor per worker slot).

An executor has ``slots`` (frames it codes at once), ``live_progress`` (whether it reports
progress while a frame is coded) and ``submit(kind, job, progress) -> Future`` whose result is
``(value, worker id)``; ``ran`` counts the frames each worker coded.
"""

from __future__ import annotations

from collections import Counter, deque
from concurrent.futures import Future
from typing import Callable

Progress = Callable[[int], None]


def done_future(fn, *args) -> Future:
    """A Future already holding ``fn(*args)`` or the exception it raised."""
    f: Future = Future()
    try:
        f.set_result(fn(*args))
    except BaseException as e:  # re-raised, in input order, by Scheduler
        f.set_exception(e)
    return f


class Scheduler:
    """Submit frames in input order; get results in input order.

    Args:
        executor: where frames run (see module docstring).
        progress: called with input bytes finished (by the executor while a frame is coded when
            it can, else with the frame's size when its result arrives).
        in_flight: most frames submitted and not yet returned (default: twice the slots, so no
            worker waits for the writer).
    """

    def __init__(self, executor, progress: Progress | None = None, in_flight: int | None = None):
        self.progress = progress
        self._fixed = in_flight
        self._q: deque = deque()
        self.use(executor)

    def use(self, executor) -> None:
        """Send the frames submitted from now on to ``executor``."""
        self.executor = executor
        self.in_flight = max(1, self._fixed or 2 * executor.slots)

    def submit(self, kind: str, job, key, size: int, inline=None) -> list:
        """Queue ``job`` (``kind``: "encode" or "decode"); ``key`` comes back with its value.
        ``inline``: an executor to use for this job instead (cheap jobs). Returns the
        ``(key, value)`` of every frame finished so far, in input order; blocks while more than
        ``in_flight`` frames are out. Raises what a job raised, in input order."""
        ex = inline or self.executor
        live = self.progress if ex.live_progress else None
        self._q.append((key, size, ex, ex.submit(kind, job, live)))
        return self._collect(len(self._q) > self.in_flight)

    def drain(self) -> list:
        """``(key, value)`` of every frame still out, in input order."""
        return self._collect(True, everything=True)

    def _collect(self, block: bool, everything: bool = False) -> list:
        out = []
        while self._q and (self._q[0][3].done() or block):
            key, size, ex, fut = self._q.popleft()
            value, worker = fut.result()
            ex.ran[worker] += 1
            if self.progress and not ex.live_progress:
                self.progress(size)
            out.append((key, value))
            block = everything or len(self._q) > self.in_flight
        return out


class Ran(Counter):
    """Frames coded per worker id (``host:pid``)."""
