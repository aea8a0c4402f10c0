"""The LLM frame codec: tokens -> lanes -> logits (``nacrith.lanes``) -> ensemble heads and CDF
(``nacrith.ensemble``, ``native/``) -> arithmetic-coded lane streams, and back.

A frame's tokens are split into contiguous lanes (``split_lanes``); the lanes are evaluated
together in one llama.cpp context (a lane's stream does not depend on which lanes share its
context: ``tests/test_kernels_invariance.py``). Frames, not lanes, are the unit of parallelism
(``nacrith.scheduler``). The payload is
``nacrith.format.write_llm_payload`` of the lane streams (``codec/FORMAT.md``, "LLM frame").
"""

from __future__ import annotations

import bisect
from typing import Callable

import numpy as np

from .coder import Decoder, Encoder
from .format import SCHEDULE_LOCKSTEP, Frame, read_llm_payload, write_llm_payload
from .ensemble import lane_models
from .errors import ChecksumError
from .lanes import PromptLookup, decode_lane_drafted, decode_lanes, encode_lanes, encode_lanes_lockstep
from .model import ATTENTION_MODES, DEFAULT_ATTENTION, Attention, Model
from .params import EnsembleParams, Window
from .segment import split_text
from .engine import Engine
from .options import Options

Progress = Callable[[int], None]
OVERRUN_BITS = 64  # a valid lane stream is never read past its end (native/NOTES.md)


def lockstep_params(params) -> bool:
    """Whether the LLM frames of ``params`` (``LLMParams``) were coded with the lockstep schedule
    (recorded; streams from before the record ran on a GPU only with it)."""
    return params.schedule == SCHEDULE_LOCKSTEP or bool(params.offload)


def split_lanes(tokens: np.ndarray, options: Options) -> list[np.ndarray]:
    """Contiguous lanes of nearly equal length (the first ``len % L`` lanes one token longer)."""
    n = len(tokens)
    lanes = max(1, min(options.max_lanes, n // options.min_lane_tokens))
    return [np.ascontiguousarray(a) for a in np.array_split(tokens, lanes)]


def _finish(encoders: list[Encoder], models: list, stats: dict | None) -> list[bytes]:
    """The lanes' coded streams; ``stats`` accumulates their ``tokens`` and ``skipped``."""
    if stats is not None:
        stats["tokens"] = stats.get("tokens", 0) + sum(x.tokens for x in models)
        stats["skipped"] = stats.get("skipped", 0) + sum(x.skipped for x in models)
    return [e.finish() for e in encoders]


def encode_group(engine: Engine, lanes: list[np.ndarray], window: Window, ensemble: EnsembleParams,
                 batch: int, progress: Progress | None = None, stats: dict | None = None,
                 escapes: list[dict] | None = None, attention: Attention = DEFAULT_ATTENTION,
                 lockstep: bool = False) -> list[bytes]:
    """Arithmetic-coded stream of each lane of ``lanes`` (int32 token arrays), evaluated
    together in one context. Any grouping of a frame's lanes gives the same streams.
    ``escapes[l]`` maps a token index of lane l to raw bytes coded just before that token.
    ``stats`` (optional dict) accumulates ``tokens`` and ``skipped`` (coded without the LLM) and
    ``lockstep_tokens`` (tokens coded with the lockstep schedule). ``lockstep``: evaluate with
    the decoder's own schedule (one token per lane per step), for a model or device whose logits
    are not proven batch-invariant (``nacrith.probe``); else in large batches."""
    m = engine.model
    ctx = engine.context(len(lanes), window, batch, max(len(x) for x in lanes), attention)
    encoders = [Encoder() for _ in lanes]
    models = lane_models(ensemble, m.n_vocab, len(lanes))
    lens = m.token_lens
    if lockstep:
        # logits not proven batch-invariant (GPU kernels are chosen by batch shape; some CPU weight
        # types): encode with the decoder's own schedule (one token per lane per step, no drafts)
        if stats is not None:
            stats["lockstep_tokens"] = stats.get("lockstep_tokens", 0) + sum(len(x) for x in lanes)
        pos = [0] * len(lanes)

        def choose(lane: int, logits: np.ndarray | None) -> int:
            t = pos[lane]
            pos[lane] += 1
            raw = escapes[lane].get(t, b"") if escapes else b""
            sym = int(lanes[lane][t])
            encoders[lane].encode_step(models[lane], logits, sym, raw)
            if progress:
                progress(int(lens[sym]) + len(raw))
            return sym

        decode_lanes(ctx, [len(x) for x in lanes], m.bos, window, choose, lambda lane: not models[lane].prepare())
        return _finish(encoders, models, stats)
    if ensemble.shared_heads and len(lanes) > 1:
        # shared heads: code step by step across lanes, exactly in the decoder's order
        # (every active lane's prepare(), then each lane's token, lane by lane)
        def on_step(t: int, rows: dict) -> None:
            for lane in rows:
                models[lane].prepare()
            for lane, logits in rows.items():
                raw = escapes[lane].get(t, b"") if escapes else b""
                sym = int(lanes[lane][t])
                encoders[lane].encode_step(models[lane], logits, sym, raw)
                if progress:
                    progress(int(lens[sym]) + len(raw))

        encode_lanes_lockstep(ctx, lanes, m.bos, window, on_step)
        return _finish(encoders, models, stats)
    esc_rows = [sorted(e) for e in escapes] if escapes else None

    def consume(lane: int, t0: int, logits: np.ndarray) -> None:
        syms = lanes[lane][t0:t0 + len(logits)]
        esc = None
        if esc_rows and esc_rows[lane]:
            rows = esc_rows[lane]
            i = bisect.bisect_left(rows, t0)
            j = bisect.bisect_left(rows, t0 + len(logits))
            esc = [(r - t0, escapes[lane][r]) for r in rows[i:j]] or None
        encoders[lane].encode_block(models[lane], logits, syms, esc)
        if progress:
            progress(int(lens[syms].sum()) + sum(len(b) for _, b in esc or ()))

    encode_lanes(ctx, lanes, m.bos, window, consume)
    return _finish(encoders, models, stats)


def decode_group(engine: Engine, streams: list[bytes], counts: list[int], window: Window,
                 ensemble: EnsembleParams, max_bytes: int, where: str = "",
                 progress: Progress | None = None,
                 attention: Attention = DEFAULT_ATTENTION,
                 stats: dict | None = None, lockstep: bool = False) -> list[tuple[np.ndarray, dict]]:
    """(tokens, escapes) of each lane from its coded stream (the inverse of ``encode_group``).
    A one-lane frame is decoded with drafts (``nacrith.lanes.decode_lane_drafted``; ``stats``
    gets its counts) unless ``lockstep`` (the stream's schedule: one token per lane per step).

    Raises ChecksumError as soon as the lanes decode to more than ``max_bytes`` bytes.
    """
    m = engine.model
    ex = engine.execution
    drafted = len(counts) == 1 and ex.draft_max > 0 and not lockstep
    ctx = engine.context(len(counts), window, 1 + ex.draft_max if drafted else max(len(counts), 1),
                          max(counts, default=0), attention)
    decoders = [Decoder(s) for s in streams]
    models = lane_models(ensemble, m.n_vocab, len(streams))
    escapes: list[dict] = [{} for _ in streams]
    position = [0] * len(streams)
    lens = m.token_lens
    done = [0]

    def needs_llm(lane: int) -> bool:
        return not models[lane].prepare()

    def count(n: int) -> None:
        done[0] += n
        if done[0] > max_bytes:
            raise ChecksumError(f"{where}decoded more than {max_bytes} bytes (corrupt)")
        if progress:
            progress(n)

    def choose(lane: int, logits: np.ndarray | None) -> int:
        while True:
            t = decoders[lane].decode_step(models[lane], logits)
            if decoders[lane].overrun > OVERRUN_BITS:
                raise ChecksumError(f"{where}lane {lane} reads past the end of its stream (corrupt)")
            if isinstance(t, int):
                break
            escapes[lane][position[lane]] = escapes[lane].get(position[lane], b"") + t
            count(len(t))
        position[lane] += 1
        count(int(lens[t]))
        return t

    if drafted:
        lanes = [decode_lane_drafted(ctx, counts[0], m.bos, window, choose, needs_llm,
                                     PromptLookup(k_max=ex.draft_max, min_match=ex.draft_min_match,
                                                  min_hit_rate=ex.draft_min_hit_rate), stats)]
    else:
        lanes = decode_lanes(ctx, counts, m.bos, window, choose, needs_llm)
    return list(zip(lanes, escapes))


def lane_bytes(model: Model, tokens: np.ndarray, escapes: dict) -> bytes:
    """Original bytes of a lane: each token's bytes, preceded by its escaped raw bytes."""
    if not escapes:
        return model.detokenize(tokens)
    tb = model.token_bytes
    return b"".join(escapes.get(i, b"") + tb[int(t)] for i, t in enumerate(tokens))


def _plan(engine: Engine, raw: bytes, options: Options) -> tuple | None:
    """(tokens and escapes, lanes) of ``raw``, or ``None`` when its tokens do not reproduce it."""
    split = split_text(engine.model, raw)
    if split is None or split.tail or len(split.tokens) == 0:
        return None
    return split, split_lanes(split.tokens, options)


def _encode(engine: Engine, raw: bytes, split, lanes: list[np.ndarray], window: Window, options: Options,
            progress: Progress | None, stats: dict | None) -> bytes | None:
    """The LLM payload of ``raw`` (tokens ``split``, ``lanes``); with ``options.verify``, ``None``
    when decoding it does not give ``raw`` back (then the frame is coded as a binary frame)."""
    starts = np.cumsum([0] + [len(x) for x in lanes])
    escapes = [{i - a: v for i, v in split.escapes.items() if a <= i < b}
               for a, b in zip(starts[:-1], starts[1:])]
    options = engine.resolve(options)
    lockstep = options.schedule == "lockstep"
    streams = encode_group(engine, lanes, window, options.ensemble, options.batch, progress,
                           stats, escapes, ATTENTION_MODES[options.attention], lockstep)
    payload = write_llm_payload([len(x) for x in lanes], streams)
    if options.verify:
        counts, coded = read_llm_payload(memoryview(payload), len(raw), 0)
        try:
            back = decode_group(engine, [bytes(c) for c in coded], counts, window, options.ensemble, len(raw),
                                attention=ATTENTION_MODES[options.attention], lockstep=lockstep)
            ok = b"".join(lane_bytes(engine.model, t, e) for t, e in back) == raw
        except ChecksumError:
            ok = False
        if stats is not None:
            stats["verified"] = stats.get("verified", 0) + 1
        if not ok:
            if stats is not None:
                stats["verify_failed"] = stats.get("verify_failed", 0) + 1
            return None
    return payload


def encode_llm_frame(engine: Engine, raw: bytes, options: Options,
                     progress: Progress | None = None, stats: dict | None = None) -> bytes | None:
    """LLM payload for ``raw`` (its lanes coded together in one context, KV window
    ``options.window``), or ``None`` when its tokens do not reproduce it exactly."""
    plan = _plan(engine, raw, options)
    return None if plan is None else _encode(engine, raw, *plan, options.window, options, progress, stats)


def encode_widened_frame(engine: Engine, raw: bytes, options: Options, progress: Progress | None = None,
                         stats: dict | None = None) -> tuple[bytes, Window] | None:
    """As ``encode_llm_frame``, with the KV window ``Options.frame_window`` picks for its lanes
    (what the stream writer codes with): (payload, that window), or ``None``."""
    plan = _plan(engine, raw, options)
    if plan is None:
        return None
    lanes = plan[1]
    window = options.frame_window(len(lanes), max(len(x) for x in lanes), engine.model.n_ctx_train)
    payload = _encode(engine, raw, *plan, window, options, progress, stats)
    return None if payload is None else (payload, window)


def decode_llm_frame(engine: Engine, fr: Frame, progress: Progress | None = None) -> bytes:
    """Decode one LLM frame (``fr.params`` must be set). The checksum is checked by the caller.

    Raises FormatError, ChecksumError, ModelMismatchError."""
    params, raw_size, offset = fr.params, fr.raw_size, fr.offset
    counts, streams = read_llm_payload(fr.payload, raw_size, offset, fr.version)
    attention = engine.check(params, f"frame at offset {offset}: ")
    lanes = decode_group(engine, [bytes(s) for s in streams], counts, params.window, params.ensemble,
                         raw_size, f"frame at offset {offset}: ", progress, attention,
                         lockstep=lockstep_params(params))
    return b"".join(lane_bytes(engine.model, t, e) for t, e in lanes)
