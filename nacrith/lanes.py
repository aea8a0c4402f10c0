"""Lanes: independent slices of a token stream evaluated together in one llama.cpp context.

The evaluation schedule, identical on both sides (``codec/FORMAT.md``, "LLM schedule"):

* Lane ``l`` holds tokens ``x[l][0..n_l)``. At step ``t`` every lane with ``n_l > t`` feeds its
  input token (BOS at ``t = 0``, else ``x[l][t-1]``) at KV position ``n_past`` and receives the
  logits that predict ``x[l][t]``. All lanes share ``n_past`` (they start together).
* Sliding window: before step ``t``, if ``n_past == window.size`` then every lane with
  ``n_l > t`` drops positions ``[sink, sink + slide)`` (``llama_memory_seq_rm``) and shifts
  ``[sink + slide, size)`` down by ``slide`` (``llama_memory_seq_add``); ``n_past -= slide``.
  The first ``sink`` positions (BOS and the first tokens: attention sinks) are always kept.

The decoder runs this one step at a time (one token per lane per ``llama_decode``); a frame of
one lane is decoded with drafts (``decode_lane_drafted``: speculative decoding, the same logits
for every step, fewer ``llama_decode`` calls). The encoder,
which knows every token, evaluates whole rounds between two slides in large batches: batch-shape
invariance of the backend makes the logits identical, and because slides happen at the same
steps, every KV cell goes through the same sequence of K-shifts on both sides (a K-shift
re-quantises all cells of the context, so it must happen at the same point in every lane).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .model import LlamaContext
from .params import Window


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
        window: sliding window (``min(window.size, longest lane) <= ctx.n_ctx_seq``: no position
            reaches past either).
        consume: called as ``consume(lane, t0, logits)`` with float32 logits of shape
            (k, n_vocab) predicting ``lanes[lane][t0:t0+k]``, in increasing ``t0`` per lane.
            The array is only valid during the call.
    """
    lens, T, inputs = _start(ctx, lanes, bos, window)
    nb = ctx.n_batch
    for t, t_end, n_past in _rounds(ctx, lens, T, window):
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


def encode_lanes_lockstep(ctx: LlamaContext, lanes: Sequence[np.ndarray], bos: int, window: Window,
                          on_step: Callable[[int, dict], None]) -> None:
    """Like ``encode_lanes``, but hands the logits over step by step across lanes, in the order
    the decoder sees them: ``on_step(t, rows)`` with ``rows`` = {lane: float32 logits (n_vocab,)
    predicting ``lanes[lane][t]``} for every lane active at step ``t``, in increasing ``t``.
    Needed when lanes share state (the heads), so that both sides update it in the same order.
    """
    lens, T, inputs = _start(ctx, lanes, bos, window)
    for t, t_end, n_past in _rounds(ctx, lens, T, window):
        s = t
        while s < t_end:
            active = [l for l in range(len(lanes)) if lens[l] > s]
            k = max(1, min(t_end - s, ctx.n_batch // max(1, len(active))))
            batch = [(l, s, min(s + k, lens[l])) for l in active]
            logits = ctx.decode(*_batch_arrays(batch, inputs, n_past, t))
            offsets, row = {}, 0
            for l, a, b in batch:
                offsets[l] = (row, b)
                row += b - a
            for u in range(s, s + k):
                on_step(u, {l: logits[r + u - s] for l, (r, b) in offsets.items() if u < b})
            s += k


def _batch_arrays(batch, inputs, n_past, t_round):
    """(tokens, positions, sequence ids) int32 arrays of the pieces (lane, first step, end step)
    of a round that starts at step ``t_round`` at KV position ``n_past``."""
    toks = np.concatenate([inputs[l][a:b] for l, a, b in batch])
    pos = np.concatenate([np.arange(n_past + a - t_round, n_past + b - t_round, dtype=np.int32)
                          for l, a, b in batch])
    seqs = np.concatenate([np.full(b - a, l, np.int32) for l, a, b in batch])
    return toks, pos, seqs


def _run_batch(ctx, batch, inputs, n_past, t_round, consume):
    logits = ctx.decode(*_batch_arrays(batch, inputs, n_past, t_round))
    row = 0
    for l, a, b in batch:
        consume(l, a, logits[row:row + b - a])
        row += b - a


def decode_lanes(ctx: LlamaContext, lengths: Sequence[int], bos: int, window: Window,
                 choose: Callable[[int, np.ndarray | None], int],
                 needs_llm: Callable[[int], bool] | None = None) -> list[np.ndarray]:
    """Run the schedule one step at a time, the token of each step chosen by ``choose``.

    Args:
        ctx, bos, window: as for ``encode_lanes``.
        lengths: tokens in each lane.
        choose: ``choose(lane, logits)`` gets float32 logits of shape (n_vocab,), or ``None`` when
            ``needs_llm(lane)`` said False for this step, and returns the lane's next token id.
        needs_llm: asked once per lane and step before any evaluation (default: always True).
            When False the lane's input token is not evaluated now but deferred: it is fed,
            with every other deferred token, before the lane's next evaluation or before the
            next slide, whichever comes first (``codec/FORMAT.md``, "Confidence skip"), so the
            KV cache ends up exactly as the encoder's.

    Returns:
        one int32 array per lane with its tokens.
    """
    if len(lengths) > ctx.n_seq or min(window.size, max(lengths, default=0)) > ctx.n_ctx_seq:
        raise ValueError("context too small for these lanes / window")
    if len(lengths) > ctx.n_batch:
        raise ValueError("more lanes than the batch size")
    ctx.clear()
    out = [np.zeros(n, np.int32) for n in lengths]
    pending: list[list[tuple[int, int]]] = [[] for _ in lengths]  # deferred (token, position)
    T = max(lengths, default=0)
    n_past = 0
    for t in range(T):
        active = [l for l in range(len(lengths)) if lengths[l] > t]
        if n_past == window.size:
            _feed(ctx, [(l, tok, pos, False) for l in active for tok, pos in pending[l]])
            for l in active:
                pending[l].clear()
            _slide(ctx, active, window)
            n_past -= window.slide
        inputs = {l: bos if t == 0 else int(out[l][t - 1]) for l in active}
        use = [l for l in active if needs_llm is None or needs_llm(l)]
        for l in active:
            if needs_llm is not None and l not in use:
                pending[l].append((inputs[l], n_past))
        items = [(l, tok, pos, False) for l in use for tok, pos in pending[l]]
        items += [(l, inputs[l], n_past, True) for l in use]
        logits = _feed(ctx, items)
        for l in use:
            pending[l].clear()
        row = {l: i for i, l in enumerate(use)}
        for l in active:
            out[l][t] = choose(l, logits[row[l]] if l in row else None)
        n_past += 1
    return out


class PromptLookup:
    """Draft tokens from the lane's own history (prompt-lookup decoding): the tokens that followed
    the latest earlier occurrence of the last ``n`` tokens. Execution only: a draft changes how
    many tokens one ``llama_decode`` evaluates, never a logit (batch invariance).

    A draft is proposed only where that occurrence matches at least ``min_match`` tokens back
    (on prose a 3-token match rarely predicts the next tokens, and a wrong draft costs its
    output-layer rows and a ``seq_rm``). The draft length adapts: doubled (up to ``k_max``)
    when a whole draft was right, back to 1 when its first token was wrong. And drafts are only
    evaluated while they pay: ``hit_rate``, a moving average (weight ``1/8``, start ``1/2``) of
    whether each guess's first token came true, is kept for every guess, evaluated or not (one
    not evaluated is checked for free against the token decoded next); below ``min_hit_rate``
    the guesses are only watched. A wrong first token costs about a quarter of a step (its
    output-layer row), a right one saves most of a step, so drafting pays above roughly 1/4.
    Measured: ``bench/results/speed.md`` ("Drafts")."""

    def __init__(self, n: int = 3, k_max: int = 8, min_match: int = 3, min_hit_rate: float = 0.3):
        if not 1 <= n <= min_match:
            raise ValueError("PromptLookup needs 1 <= n <= min_match")
        self.n, self.k_max, self.min_match, self.k = n, k_max, min_match, 1
        self.min_hit_rate, self.hit_rate = min_hit_rate, 0.5
        self.last: dict[tuple, int] = {}
        self._pending: int | None = None  # first token of the last guess, checked by add()

    def add(self, out: np.ndarray, t: int) -> None:
        """``out[:t]`` is known: index the ``n`` tokens ending at ``t - 2`` (followed by ``t - 1``)."""
        if self._pending is not None:
            self.hit_rate += ((out[t - 1] == self._pending) - self.hit_rate) * 0.125
            self._pending = None
        if t - 1 >= self.n:
            self.last[tuple(out[t - 1 - self.n:t - 1].tolist())] = t - 1

    def propose(self, out: np.ndarray, t: int, room: int) -> list[int]:
        """At most ``min(k, room)`` guesses of ``out[t], out[t+1], ...`` from ``out[:t]``."""
        if t < self.n or room <= 0:
            return []
        p = self.last.get(tuple(out[t - self.n:t].tolist()))
        if p is None:
            return []
        m = self.n
        while m < self.min_match and p - m - 1 >= 0 and out[p - m - 1] == out[t - m - 1]:
            m += 1
        if m < self.min_match:
            return []
        self._pending = int(out[p])
        if self.hit_rate < self.min_hit_rate:
            return []
        return out[p:min(p + min(self.k, room), t)].tolist()

    def feedback(self, proposed: int, accepted: int) -> None:
        if proposed:
            self.k = min(self.k_max, self.k * 2) if accepted == proposed else 1 if accepted == 0 else self.k


def accept_drafts(drafts, out: np.ndarray, t: int, guess: list[int], token: Callable[[int], int]) -> int:
    """One drafted step of the schedule: ``out[t + i] = token(i)`` for i = 0, 1, ... while the
    decoded tokens equal the draft ``guess``, each shown to the draft source (``drafts.add``);
    returns the drafts accepted (``out[:t + i + 1]`` is then known), after ``drafts.feedback``."""
    i = 0
    while True:
        out[t + i] = token(i)
        drafts.add(out, t + i + 1)
        if i < len(guess) and guess[i] == out[t + i]:
            i += 1
            continue
        drafts.feedback(len(guess), i)
        return i


def decode_lane_drafted(ctx: LlamaContext, length: int, bos: int, window: Window,
                        choose: Callable[[int, np.ndarray | None], int],
                        needs_llm: Callable[[int], bool] | None = None,
                        drafts: PromptLookup | None = None, stats: dict | None = None) -> np.ndarray:
    """``decode_lanes`` of one lane (sequence 0), with speculative decoding.

    Each ``llama_decode`` evaluates the step's input token and a draft of the next inputs
    (``PromptLookup``) at the next positions; while the decoded tokens equal the draft, the next
    steps' logits are already there; the cells of a wrong draft are removed
    (``llama_memory_seq_rm``) and rewritten in order, so every KV cell and every logit is the
    plain schedule's. Drafts never reach past the window (a slide happens where the plain
    decoder's does) or past the lane. A step that ``needs_llm`` skips gets ``None`` (its input
    is evaluated anyway: the KV cache is the same). ``stats`` gets ``calls`` and ``drafted``/
    ``accepted`` token counts. Needs ``ctx.n_batch > 1`` to draft at all.
    """
    if min(window.size, length) > ctx.n_ctx_seq:
        raise ValueError("context too small for this lane / window")
    ctx.clear()
    out = np.zeros(length, np.int32)
    drafts = drafts or PromptLookup()
    seq0 = np.zeros(ctx.n_batch, np.int32)
    calls = drafted = accepted = 0
    n_past = t = 0
    logits = None

    def token(i: int) -> int:  # the step's i-th logits row (this call's) -> the decoded token
        return choose(0, logits[i] if needs_llm is None or needs_llm(0) else None)

    while t < length:
        if n_past == window.size:
            _slide(ctx, [0], window)
            n_past -= window.slide
        room = min(window.size - 1 - n_past, length - 1 - t, ctx.n_batch - 1)
        guess = drafts.propose(out, t, room)
        toks = np.array([bos if t == 0 else out[t - 1]] + guess, np.int32)
        logits = ctx.decode(toks, np.arange(n_past, n_past + len(toks), dtype=np.int32), seq0[:len(toks)])
        calls += 1
        i = accept_drafts(drafts, out, t, guess, token)
        if i < len(guess):
            ctx.seq_rm(0, n_past + i + 1, -1)
        drafted += len(guess)
        accepted += i
        t += i + 1
        n_past += i + 1
    if stats is not None:
        for k, v in (("calls", calls), ("drafted", drafted), ("accepted", accepted)):
            stats[k] = stats.get(k, 0) + v
    return out


def _start(ctx: LlamaContext, lanes: Sequence[np.ndarray], bos: int, window: Window):
    """Check the context, empty it; returns (lane lengths, steps, each lane's input tokens:
    ``bos`` then the lane's tokens shifted by one)."""
    if len(lanes) > ctx.n_seq or min(window.size, max(map(len, lanes), default=0)) > ctx.n_ctx_seq:
        raise ValueError("context too small for these lanes / window")
    ctx.clear()
    lens = [len(x) for x in lanes]
    inputs = [np.concatenate([np.array([bos], np.int32), np.asarray(x[:-1], np.int32)]) if len(x) else x
              for x in lanes]
    return lens, max(lens, default=0), inputs


def _rounds(ctx: LlamaContext, lens: Sequence[int], T: int, window: Window):
    """The encoders' rounds: yields (first step, end step, KV position of the first step),
    sliding the window of the lanes still active before a round that would overflow it."""
    t = 0
    n_past = 0
    while t < T:
        if n_past == window.size:
            _slide(ctx, [l for l in range(len(lens)) if lens[l] > t], window)
            n_past -= window.slide
        t_end = min(T, t + window.size - n_past)
        yield t, t_end, n_past
        n_past += t_end - t
        t = t_end


def _feed(ctx: LlamaContext, items: list[tuple[int, int, int, bool]]) -> np.ndarray:
    """Evaluate (lane, token, position, wants_logits) items in batches of at most ``ctx.n_batch``.

    Items wanting logits (at most one per lane, listed last) all go in the final batch, preceded
    by as many of the others as fit. Returns their logits in item order.
    """
    if not items:
        return np.zeros((0, ctx.n_vocab), np.float32)
    nb = ctx.n_batch
    plain = [it for it in items if not it[3]]
    wanted = [it for it in items if it[3]]
    head = max(0, len(plain) + len(wanted) - nb)  # plain items that do not fit the final batch
    batches = [plain[i:min(i + nb, head)] for i in range(0, head, nb)]
    batches.append(plain[head:] + wanted)
    logits = None
    for chunk in batches:
        if not chunk:
            continue
        toks = np.array([it[1] for it in chunk], np.int32)
        pos = np.array([it[2] for it in chunk], np.int32)
        seqs = np.array([it[0] for it in chunk], np.int32)
        flags = np.array([it[3] for it in chunk], np.int8)
        logits = ctx.decode(toks, pos, seqs, flags)
    return logits if wanted else np.zeros((0, ctx.n_vocab), np.float32)
