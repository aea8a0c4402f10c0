"""Lanes: independent slices of a token stream evaluated together in one llama.cpp context.

The evaluation schedule, identical on both sides (``codec/FORMAT.md``, "LLM schedule"):

* Lane ``l`` holds tokens ``x[l][0..n_l)``. At step ``t`` every lane with ``n_l > t`` feeds its
  input token (BOS at ``t = 0``, else ``x[l][t-1]``) at KV position ``n_past`` and receives the
  logits that predict ``x[l][t]``. All lanes share ``n_past`` (they start together).
* Sliding window: before step ``t``, if ``n_past == window.size`` then every lane with
  ``n_l > t`` drops positions ``[sink, sink + slide)`` (``llama_memory_seq_rm``) and shifts
  ``[sink + slide, size)`` down by ``slide`` (``llama_memory_seq_add``); ``n_past -= slide``.
  The first ``sink`` positions (BOS and the first tokens: attention sinks) are always kept.

The decoder runs this one step at a time (one token per lane per ``llama_decode``). The encoder,
which knows every token, evaluates whole rounds between two slides in large batches: batch-shape
invariance of the backend makes the logits identical, and because slides happen at the same
steps, every KV cell goes through the same sequence of K-shifts on both sides (a K-shift
re-quantises all cells of the context, so it must happen at the same point in every lane).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .model import LlamaContext


@dataclass(frozen=True)
class Window:
    """Sliding KV-cache window of a lane, in tokens.

    size: most positions held (C); sink: leading positions never evicted (S);
    slide: positions evicted at once when the window is full (B).
    """

    size: int = 2048
    sink: int = 4
    slide: int = 512

    def __post_init__(self):
        if not (1 <= self.sink and 1 <= self.slide and self.sink + self.slide <= self.size):
            raise ValueError(f"bad window: need 1 <= sink, 1 <= slide, sink + slide <= size ({self})")
        if self.size > 1 << 20:
            raise ValueError(f"window size {self.size} too large")


def _slide(ctx: LlamaContext, seqs: Sequence[int], w: Window) -> None:
    for s in seqs:
        ctx.seq_rm(s, w.sink, w.sink + w.slide)
        ctx.seq_add(s, w.sink + w.slide, w.size, -w.slide)


def encode_lanes(ctx: LlamaContext, lanes: Sequence[np.ndarray], bos: int, window: Window,
                 consume: Callable[[int, int, np.ndarray], None]) -> None:
    """Evaluate every lane as the schedule says, in large batches.

    Args:
        ctx: a context with ``n_seq >= len(lanes)``, emptied here first.
        lanes: int32 token arrays, lane ``l`` uses sequence id ``l``.
        bos: the token fed at step 0.
        window: sliding window (``window.size <= ctx.n_ctx_seq``).
        consume: called as ``consume(lane, t0, logits)`` with float32 logits of shape
            (k, n_vocab) predicting ``lanes[lane][t0:t0+k]``, in increasing ``t0`` per lane.
            The array is only valid during the call.
    """
    if len(lanes) > ctx.n_seq or window.size > ctx.n_ctx_seq:
        raise ValueError("context too small for these lanes / window")
    ctx.clear()
    lens = [len(x) for x in lanes]
    T = max(lens, default=0)
    inputs = [np.concatenate([np.array([bos], np.int32), np.asarray(x[:-1], np.int32)]) if len(x) else x
              for x in lanes]
    nb = ctx.n_batch
    t = 0
    n_past = 0
    while t < T:
        if n_past == window.size:
            _slide(ctx, [l for l in range(len(lanes)) if lens[l] > t], window)
            n_past -= window.slide
        t_end = min(T, t + window.size - n_past)
        # pieces (lane, first step, last step) of this round, packed into batches
        pieces = [(l, t, min(t_end, lens[l])) for l in range(len(lanes)) if lens[l] > t]
        batch: list[tuple[int, int, int]] = []
        used = 0
        for l, a, b in pieces:
            while a < b:
                k = min(b - a, nb - used)
                batch.append((l, a, a + k))
                used += k
                a += k
                if used == nb:
                    _run_batch(ctx, batch, inputs, n_past, t, consume)
                    batch, used = [], 0
        if batch:
            _run_batch(ctx, batch, inputs, n_past, t, consume)
        n_past += t_end - t
        t = t_end


def _run_batch(ctx, batch, inputs, n_past, t_round, consume):
    toks = np.concatenate([inputs[l][a:b] for l, a, b in batch])
    pos = np.concatenate([np.arange(n_past + a - t_round, n_past + b - t_round, dtype=np.int32)
                          for l, a, b in batch])
    seqs = np.concatenate([np.full(b - a, l, np.int32) for l, a, b in batch])
    logits = ctx.decode(toks, pos, seqs)
    row = 0
    for l, a, b in batch:
        consume(l, a, logits[row:row + b - a])
        row += b - a


def decode_lanes(ctx: LlamaContext, lengths: Sequence[int], bos: int, window: Window,
                 choose: Callable[[int, np.ndarray], int]) -> list[np.ndarray]:
    """Run the schedule one step at a time, the token of each step chosen by ``choose``.

    Args:
        ctx, bos, window: as for ``encode_lanes``.
        lengths: tokens in each lane.
        choose: ``choose(lane, logits)`` gets float32 logits of shape (n_vocab,) and returns the
            lane's next token id (the arithmetic decoder's output).

    Returns:
        one int32 array per lane with its tokens.
    """
    if len(lengths) > ctx.n_seq or window.size > ctx.n_ctx_seq:
        raise ValueError("context too small for these lanes / window")
    if len(lengths) > ctx.n_batch:
        raise ValueError("more lanes than the batch size")
    ctx.clear()
    out = [np.zeros(n, np.int32) for n in lengths]
    T = max(lengths, default=0)
    n_past = 0
    for t in range(T):
        active = [l for l in range(len(lengths)) if lengths[l] > t]
        if n_past == window.size:
            _slide(ctx, active, window)
            n_past -= window.slide
        toks = np.array([bos if t == 0 else out[l][t - 1] for l in active], np.int32)
        logits = ctx.decode(toks, np.full(len(active), n_past, np.int32), np.array(active, np.int32))
        for i, l in enumerate(active):
            out[l][t] = choose(l, logits[i])
        n_past += 1
    return out
