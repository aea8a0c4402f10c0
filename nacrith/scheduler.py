"""The frame scheduler: whole frames go to an executor, results come back in input order, with a
bounded number of frames in flight (memory stays flat whatever the input length).

Frames are independent (each starts its own lanes, heads and LLM context), so where a frame is
coded does not change its bytes: a stream never records how it was made. The scheduler knows
nothing of the codec: it runs the function it is given (``fn(engine, *args)``) on an executor
(``nacrith.executors``).

Where a frame runs, decided once here: a cheap job (a binary frame to decode) runs in this
process; the first other job is held until the next job arrives, so that an input of one frame
is coded in this process (no worker starts, no second model loads) and the worker pool starts
with the second frame, which takes the held one first.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

Progress = Callable[[int], None]


class Scheduler:
    """Submit jobs in input order; get their results in input order.

    Args:
        inline: the executor of this process.
        pool: returns the executor of the workers (started on first call; may be ``inline``).
        progress: called with input bytes finished (by the executor while a frame is coded when
            it can, else with the frame's size when its result arrives).
        in_flight: most jobs submitted and not yet returned (default: twice the pool's slots, so
            no worker waits for the writer).
    """

    def __init__(self, inline, pool: Callable[[], object], progress: Progress | None = None,
                 in_flight: int | None = None):
        self.inline, self._pool, self.progress = inline, pool, progress
        self._fixed = in_flight
        self.executor = None  # where non-cheap jobs run, once decided
        self._held = None  # the first non-cheap job (its queue entry), until the next job arrives
        self._q: deque = deque()

    @property
    def in_flight(self) -> int:
        return max(1, self._fixed or 2 * (self.executor or self.inline).slots)

    def _start(self, entry: list, executor) -> None:
        fn, args = entry[4]
        entry[2] = executor
        entry[3] = executor.submit(fn, args, self.progress if executor.live_progress else None)

    def _release(self, executor) -> None:
        self.executor = executor
        held, self._held = self._held, None
        if held is not None:
            self._start(held, executor)

    def submit(self, fn, args: tuple, key, size: int, cheap: bool = False) -> list:
        """Queue ``fn(engine, *args)``; ``key`` comes back with its value. ``cheap``: run it in this
        process. Returns the ``(key, value)`` of every job finished so far, in input order; blocks
        while more than ``in_flight`` jobs are out. Raises what a job raised, in input order."""
        if self._held is not None:  # a second job: the pool starts, with the held one first
            self._release(self._pool())
        entry = [key, size, None, None, (fn, args)]
        self._q.append(entry)
        if cheap:
            self._start(entry, self.inline)
        elif self.executor is None:
            self._held = entry
            return self._collect(False)
        else:
            self._start(entry, self.executor)
        return self._collect(len(self._q) > self.in_flight)

    def drain(self) -> list:
        """``(key, value)`` of every job still out, in input order (a job still held, the only
        one, runs in this process)."""
        if self._held is not None:
            self._release(self.inline)
        return self._collect(True, everything=True)

    def _collect(self, block: bool, everything: bool = False) -> list:
        out = []
        while self._q and self._q[0][3] is not None and (self._q[0][3].done() or block):
            key, size, ex, fut, _ = self._q.popleft()
            value, worker = fut.result()
            ex.ran[worker] += 1
            if self.progress and not ex.live_progress:
                self.progress(size)
            out.append((key, value))
            block = everything or len(self._q) > self.in_flight
        return out
