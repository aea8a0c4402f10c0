"""Compress and decompress: frames, the LLM frame codec and the binary fallbacks.

A stream is ``header, frame*, [seek table], end`` (``nacrith.container``, ``codec/FORMAT.md``).
Input is split into text and binary runs (``nacrith.segment``); each frame covers at most
``frame_size`` input bytes and is coded by the smallest of:

* ``llm`` (text runs): tokens plus escaped raw bytes, split into lanes, each lane
  arithmetic-coded with the ensemble's distribution (``nacrith.lanes``, ``native/ensemble.c``);
* ``zstd`` (level 19), ``lzma2`` (raw LZMA2 at xz -9e strength, filter and literal settings
  searched per frame: ``nacrith.lzma2``), ``stored``. Streams may also hold ``lzma`` (.xz)
  frames, which earlier encoders wrote.

Every frame carries a checksum of its original bytes and the end frame one of the whole input;
both are verified on decoding before anything is returned.
"""

from __future__ import annotations

import bisect
import lzma
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import zstandard

from . import __version__, lzma2
from .coder import Decoder, Encoder
from .container import (FRAME_LLM, FRAME_LZMA, FRAME_LZMA2, FRAME_NAMES, FRAME_PARAMS, FRAME_SEEK, FRAME_STORED,
                        FRAME_ZSTD, MAX_FRAME_SIZE, MAX_LANES, EndFrame, FrameHeader, LLMParams,
                        SeekEntry, StreamHeader, frame_checksum, read_frame, read_header,
                        read_llm_payload, read_params, read_seek_table, total_hasher, write_end,
                        write_frame, write_llm_payload, write_seek_table)
from .ensemble import EnsembleParams
from .errors import ChecksumError, FormatError, ModelMismatchError, TruncatedError
from .lanes import Window, decode_lanes, encode_lanes, encode_lanes_lockstep
from .segment import cut, split_text
from .model import LlamaContext, Model, default_gpu_layers, default_parallelism, default_threads

Progress = Callable[[int], None]
OVERRUN_BITS = 64  # a valid lane stream is never read past its end (native/NOTES.md)
ZSTD_LEVEL = 19


@dataclass(frozen=True)
class Options:
    """Encoder choices. Those the decoder needs are written to the stream header.

    window: sliding KV window per lane (tokens). ensemble: n-gram / bias / mixer / skip
    hyper-parameters (``EnsembleParams``; ``LLM_ONLY`` turns every head off).
    frame_size: most input bytes per frame.
    max_lanes: most lanes per frame; min_lane_tokens: a frame gets
    ``clamp(tokens // min_lane_tokens, 1, max_lanes)`` lanes. batch: tokens per llama_decode
    call when encoding (execution only; the logits do not depend on it).
    """

    window: Window = field(default_factory=lambda: Window(1024, 4, 256))
    ensemble: EnsembleParams = field(default_factory=EnsembleParams)
    frame_size: int = 1 << 20
    max_lanes: int = 8
    min_lane_tokens: int = 2048
    batch: int = 256

    def __post_init__(self):
        if not 1 <= self.frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"frame_size must be in [1, {MAX_FRAME_SIZE}]")
        if not 1 <= self.max_lanes <= MAX_LANES:
            raise ValueError(f"max_lanes must be in [1, {MAX_LANES}]")
        if self.min_lane_tokens < 1 or self.batch < 1:
            raise ValueError("min_lane_tokens and batch must be >= 1")


class Session:
    """A loaded model and llama.cpp contexts, reused across calls (load once, code many).

    Args:
        model: GGUF path (``None``: ``--model``/``NACRITH_MODEL``/embedded default order) or a
            loaded ``Model``.
        threads: llama.cpp threads (default: the cores this process may use).
        workers: worker processes, each with its own context (default: from the cores); an
            execution choice, never recorded in the stream.
        gpu_layers: layers offloaded to a GPU backend (0: CPU, -1: all; default: all when the
            llama.cpp build has a GPU backend, else 0).

    The model is loaded on first use, so decoding streams without LLM frames needs none.
    """

    def __init__(self, model: str | os.PathLike | Model | None = None, *, threads: int | None = None,
                 workers: int | None = None, gpu_layers: int | None = None):
        self._model = model if isinstance(model, Model) else None
        self._model_path = None if isinstance(model, Model) else model
        auto_workers, auto_threads = default_parallelism()
        self.workers = int(workers) if workers else (auto_workers if not threads else 1)
        self.threads = int(threads) if threads else max(1, auto_threads if self.workers == auto_workers
                                                       else default_threads() // self.workers)
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        self.gpu_layers = default_gpu_layers() if gpu_layers is None else int(gpu_layers)
        self._ctx: LlamaContext | None = None
        self._fingerprint: str | None = None
        self._pool = None

    def pool(self):
        """The worker processes (started on first use, each loading the model once)."""
        if self._pool is None:
            from .workers import WorkerPool

            self._pool = WorkerPool(str(self.model.path), self.workers, self.threads, self.gpu_layers)
        return self._pool

    @property
    def model(self) -> Model:
        if self._model is None:
            self._model = Model(self._model_path, n_gpu_layers=self.gpu_layers)
        return self._model

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from .backend import fingerprint

            self._fingerprint = fingerprint(self.model.n_gpu_layers)
        return self._fingerprint

    def context(self, n_seq: int, window: Window, n_batch: int) -> LlamaContext:
        """A context with at least ``n_seq`` sequences of ``window.size`` cells (cached)."""
        c = self._ctx
        cells = (window.size + 255) // 256 * 256
        if c is None or c.n_seq < n_seq or c.n_ctx_seq != cells or c.n_batch < n_batch:
            if c is not None:
                c.close()
            self._ctx = None
            c = self._ctx = LlamaContext(self.model, n_seq=n_seq, n_ctx_seq=window.size,
                                         n_batch=n_batch, n_threads=self.threads)
        return c

    def params(self, options: Options) -> LLMParams:
        from .backend import fingerprint_id, label

        m = self.model
        return LLMParams(bytes.fromhex(m.sha256)[:16], fingerprint_id(self.fingerprint),
                         label(m.n_gpu_layers), m.n_vocab, m.bos, options.window, options.ensemble,
                         m.name, f"nacrith {__version__}")

    def check(self, params: LLMParams, where: str = "") -> None:
        """Raise ``ModelMismatchError`` unless this session can decode ``params``' LLM frames."""
        from .backend import fingerprint_id

        m = self.model
        if params.model_id != bytes.fromhex(m.sha256)[:16]:
            raise ModelMismatchError(
                f"{where}stream was made with model {params.model_name or '?'} "
                f"(sha256 {params.model_id.hex()}...), but the loaded model is {m.name} "
                f"(sha256 {m.sha256[:32]}..., {m.path}); pass --model")
        if params.backend_id != fingerprint_id(self.fingerprint):
            raise ModelMismatchError(
                f"{where}stream was made on backend [{params.backend}, id {params.backend_id.hex()}] "
                f"but this one is [{self.fingerprint}, id {fingerprint_id(self.fingerprint).hex()}]; "
                "decode it with the same llama.cpp build and device")
        if params.n_vocab != m.n_vocab or params.bos != m.bos:
            raise FormatError(f"{where}vocabulary parameters do not match the model")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
        if self._model is not None:
            self._model.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def split_lanes(tokens: np.ndarray, options: Options) -> list[np.ndarray]:
    """Contiguous lanes of nearly equal length (the first ``len % L`` lanes one token longer)."""
    n = len(tokens)
    lanes = max(1, min(options.max_lanes, n // options.min_lane_tokens))
    return [np.ascontiguousarray(a) for a in np.array_split(tokens, lanes)]


def encode_group(session: Session, lanes: list[np.ndarray], window: Window, ensemble: EnsembleParams,
                 batch: int, progress: Progress | None = None, stats: dict | None = None,
                 escapes: list[dict] | None = None) -> list[bytes]:
    """Arithmetic-coded stream of each lane of ``lanes`` (int32 token arrays), evaluated
    together in one context. Any grouping of a frame's lanes gives the same streams.
    ``escapes[l]`` maps a token index of lane l to raw bytes coded just before that token.
    ``stats`` (optional dict) accumulates ``tokens`` and ``skipped`` (coded without the LLM)."""
    m = session.model
    ctx = session.context(len(lanes), window, batch)
    encoders = [Encoder() for _ in lanes]
    models = ensemble.lane_models(m.n_vocab, len(lanes))
    lens = m.token_lens
    if ensemble.shared_lanes and len(lanes) > 1:
        # shared heads: code step by step across lanes, exactly in the decoder's order
        # (every active lane's prepare(), then each lane's token, lane by lane)
        def on_step(t: int, rows: dict) -> None:
            for lane in rows:
                models[lane].prepare()
            for lane, logits in rows.items():
                raw = escapes[lane].get(t, b"") if escapes else b""
                sym = int(lanes[lane][t])
                models[lane].encode(encoders[lane], logits, sym, raw)
                if progress:
                    progress(int(lens[sym]) + len(raw))

        encode_lanes_lockstep(ctx, lanes, m.bos, window, on_step)
        if stats is not None:
            stats["tokens"] = stats.get("tokens", 0) + sum(x.tokens for x in models)
            stats["skipped"] = stats.get("skipped", 0) + sum(x.skipped for x in models)
        return [e.finish() for e in encoders]
    esc_rows = [sorted(e) for e in escapes] if escapes else None

    def consume(lane: int, t0: int, logits: np.ndarray) -> None:
        syms = lanes[lane][t0:t0 + len(logits)]
        esc = None
        if esc_rows and esc_rows[lane]:
            rows = esc_rows[lane]
            i = bisect.bisect_left(rows, t0)
            j = bisect.bisect_left(rows, t0 + len(logits))
            esc = [(r - t0, escapes[lane][r]) for r in rows[i:j]] or None
        models[lane].encode_block(encoders[lane], logits, syms, esc)
        if progress:
            progress(int(lens[syms].sum()) + sum(len(b) for _, b in esc or ()))

    encode_lanes(ctx, lanes, m.bos, window, consume)
    if stats is not None:
        stats["tokens"] = stats.get("tokens", 0) + sum(x.tokens for x in models)
        stats["skipped"] = stats.get("skipped", 0) + sum(x.skipped for x in models)
    return [e.finish() for e in encoders]


def decode_group(session: Session, streams: list[bytes], counts: list[int], window: Window,
                 ensemble: EnsembleParams, max_bytes: int, where: str = "",
                 progress: Progress | None = None) -> list[tuple[np.ndarray, dict]]:
    """(tokens, escapes) of each lane from its coded stream (the inverse of ``encode_group``).

    Raises ChecksumError as soon as the lanes decode to more than ``max_bytes`` bytes.
    """
    m = session.model
    ctx = session.context(len(counts), window, max(len(counts), 1))
    decoders = [Decoder(s) for s in streams]
    models = ensemble.lane_models(m.n_vocab, len(streams))
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
            t = models[lane].decode(decoders[lane], logits)
            if decoders[lane].overrun > OVERRUN_BITS:
                raise ChecksumError(f"{where}lane {lane} reads past the end of its stream (corrupt)")
            if isinstance(t, int):
                break
            escapes[lane][position[lane]] = escapes[lane].get(position[lane], b"") + t
            count(len(t))
        position[lane] += 1
        count(int(lens[t]))
        return t

    lanes = decode_lanes(ctx, counts, m.bos, window, choose, needs_llm)
    return list(zip(lanes, escapes))


def lane_bytes(model: Model, tokens: np.ndarray, escapes: dict) -> bytes:
    """Original bytes of a lane: each token's bytes, preceded by its escaped raw bytes."""
    if not escapes:
        return model.detokenize(tokens)
    tb = model.token_bytes
    return b"".join(escapes.get(i, b"") + tb[int(t)] for i, t in enumerate(tokens))


def _groups(n: int, k: int) -> list[range]:
    """Split lane indices 0..n-1 into at most k contiguous, nearly equal groups."""
    k = max(1, min(k, n))
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def encode_llm_frame(session: Session, raw: bytes, options: Options,
                     progress: Progress | None = None, stats: dict | None = None) -> bytes | None:
    """LLM payload for ``raw``, or ``None`` when its tokens do not reproduce it exactly."""
    m = session.model
    split = split_text(m, raw)
    if split is None or split.tail or len(split.tokens) == 0:
        return None
    lanes = split_lanes(split.tokens, options)
    starts = np.cumsum([0] + [len(x) for x in lanes])
    escapes = [{i - a: v for i, v in split.escapes.items() if a <= i < b}
               for a, b in zip(starts[:-1], starts[1:])]
    # lanes sharing heads must stay in one process; otherwise workers take groups of lanes
    groups = _groups(len(lanes), 1 if options.ensemble.shared_lanes else session.workers)
    if len(groups) == 1:
        streams = encode_group(session, lanes, options.window, options.ensemble, options.batch, progress,
                               stats, escapes)
    else:
        jobs = [([lanes[i] for i in g], options.window, options.ensemble, options.batch,
                 [escapes[i] for i in g]) for g in groups]
        streams = []
        for g, (res, st) in zip(groups, session.pool().map("encode", jobs)):
            streams += res
            if stats is not None:
                for k, v in st.items():
                    stats[k] = stats.get(k, 0) + v
            if progress:
                progress(int(sum(m.token_lens[lanes[i]].sum() + sum(map(len, escapes[i].values()))
                                 for i in g)))
    return write_llm_payload([len(x) for x in lanes], streams)


def decode_llm_frame(session: Session, fr: FrameHeader, progress: Progress | None = None) -> bytes:
    """Decode one LLM frame (``fr.params`` must be set). The checksum is checked by the caller."""
    params, raw_size, offset = fr.params, fr.raw_size, fr.offset
    counts, streams = read_llm_payload(fr.payload, raw_size, offset)
    session.check(params, f"frame at offset {offset}: ")
    where = f"frame at offset {offset}: "
    streams = [bytes(s) for s in streams]
    groups = _groups(len(counts), 1 if params.ensemble.shared_lanes else session.workers)
    m = session.model
    if len(groups) == 1:
        lanes = decode_group(session, streams, counts, params.window, params.ensemble, raw_size,
                             where, progress)
    else:
        jobs = [([streams[i] for i in g], [counts[i] for i in g], params.window, params.ensemble,
                 raw_size, where) for g in groups]
        lanes = []
        for res in session.pool().map("decode", jobs):
            lanes += res
            if progress:
                progress(int(sum(m.token_lens[t].sum() + sum(map(len, e.values())) for t, e in res)))
    return b"".join(lane_bytes(m, t, e) for t, e in lanes)


class FrameEncoder:
    """Incremental stream writer: ``encode_frame(raw)`` returns the bytes of one frame (preceded
    by the stream header on the first call and by the params frame before the first LLM frame);
    ``finish()`` returns the seek table and end frame. Memory: one frame at a time.

    Args: as ``compress``.
    """

    def __init__(self, session: Session, options: Options = Options(), progress: Progress | None = None,
                 stats: dict | None = None, reuse: tuple[bytes, list] | None = None):
        self.session, self.options, self.progress, self.stats = session, options, progress, stats
        self.reuse = reuse  # (raw, binary candidates) computed before for the same raw bytes
        self.first: tuple[bytes, list] | None = None  # the same for this stream's only frame so far
        self.pos = 0  # bytes emitted so far
        self.entries: list[SeekEntry] = []
        self.total = 0
        self.hasher = total_hasher()
        self._zc = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._params_frame: bytes | None = None
        self._params_offset = 0  # 0 until written
        self._started = False
        self.finished = False

    def _emit(self, parts: list[bytes], chunk: bytes) -> None:
        parts.append(chunk)
        self.pos += len(chunk)

    def encode_frame(self, raw: bytes, text: bool = True) -> bytes:
        """Encode ``raw`` (1..frame_size bytes) as one frame: the smallest of stored, zstd,
        lzma2 and (when ``text``) the LLM."""
        if self.finished:
            raise ValueError("stream already finished")
        if not 0 < len(raw) <= self.options.frame_size:
            raise ValueError(f"frame of {len(raw)} bytes (frame size {self.options.frame_size})")
        parts: list[bytes] = []
        if not self._started:
            self._emit(parts, StreamHeader(self.options.frame_size).encode())
            self._started = True
        self.hasher.update(raw)
        self.total += len(raw)
        candidates = self._binary_candidates(raw)
        done = [0]

        def prog(n, done=done):
            done[0] += n
            if self.progress:
                self.progress(n)

        llm_stats: dict = {}
        llm = encode_llm_frame(self.session, raw, self.options, prog, llm_stats) if text else None
        if llm is not None:
            self._params_frame = self._params_frame or self.session.params(self.options).encode()
            extra = 0 if self._params_offset else len(self._params_frame)
            candidates.append((len(llm) + extra, FRAME_LLM, llm))
        if self.progress and done[0] < len(raw):
            self.progress(len(raw) - done[0])
        _, kind, payload = min(candidates, key=lambda c: (c[0], c[1]))
        if kind == FRAME_LLM and not self._params_offset:
            self._params_offset = self.pos
            self._emit(parts, self._params_frame)
        self.entries.append(SeekEntry(len(raw), self.pos, self._params_offset if kind == FRAME_LLM else 0))
        self._emit(parts, write_frame(kind, raw, payload))
        if self.stats is not None:
            frames = self.stats.setdefault("frames", {})
            frames[FRAME_NAMES[kind]] = frames.get(FRAME_NAMES[kind], 0) + 1
            if kind == FRAME_LLM:
                for k, v in llm_stats.items():
                    self.stats[k] = self.stats.get(k, 0) + v
        return b"".join(parts)

    def _binary_candidates(self, raw: bytes) -> list[tuple[int, int, bytes]]:
        """(size, frame type, payload) of stored, zstd and the lzma2 settings for ``raw``. Reuses
        ``self.reuse`` when it holds the same bytes (the whole-input fallback of a one-frame
        stream codes exactly the hybrid frame's bytes), and keeps the first frame's candidates
        in ``self.first`` until a second frame comes."""
        if self.reuse is not None and self.reuse[0] == raw:
            cands = self.reuse[1]
        else:
            z = self._zc.compress(raw)
            cands = [(len(raw), FRAME_STORED, raw), (len(z), FRAME_ZSTD, z)]
            cands += [(len(x), FRAME_LZMA2, x) for x in lzma2.candidates(raw)]
        self.first = (raw, cands) if not self.entries else None
        return list(cands)

    def finish(self) -> bytes:
        """Seek table (when there is more than one data frame) and end frame. Idempotent: a
        second call returns b""."""
        if self.finished:
            return b""
        self.finished = True
        parts: list[bytes] = []
        if not self._started:
            self._emit(parts, StreamHeader(self.options.frame_size).encode())
        seek = 0
        if len(self.entries) > 1:
            seek = self.pos
            self._emit(parts, write_seek_table(self.entries))
        self._emit(parts, write_end(self.total, self.hasher.digest(), seek))
        return b"".join(parts)


class StreamEncoder:
    """Bytes in, stream bytes out, in bounded memory: buffers up to one frame of input, splits it
    into text and binary frames (``nacrith.segment.cut``) and encodes them.

    ``feed(data)`` returns the stream bytes ready so far; ``finish()`` the rest.
    """

    def __init__(self, session: Session, options: Options = Options(), progress: Progress | None = None,
                 stats: dict | None = None):
        self.enc = FrameEncoder(session, options, progress, stats)
        self.session = session
        self.frame_size = options.frame_size
        self._buf = bytearray()

    def _emit(self, final: bool) -> bytes:
        out = []
        while len(self._buf) >= self.frame_size or (final and self._buf):
            chunk = bytes(self._buf[:self.frame_size])
            del self._buf[:self.frame_size]
            last = final and not self._buf
            m = self.session.model
            frames, carry = cut(chunk, m.missing_bytes, m.tokenize, self.frame_size, last)
            self._buf[:0] = carry
            out += [self.enc.encode_frame(piece, text) for piece, text in frames]
            if carry and len(chunk) == len(carry):  # nothing but a tail: cannot progress
                self._buf[:len(carry)] = b""
                out.append(self.enc.encode_frame(carry, False))
        return b"".join(out)

    def feed(self, data) -> bytes:
        self._buf += memoryview(data).cast("B")
        return self._emit(False)

    def finish(self) -> bytes:
        return self._emit(True) + self.enc.finish()


def zstd_reference_size(data: bytes) -> int:
    """Size of ``zstd -19 --long`` of ``data`` (the bound the hybrid path must stay under)."""
    params = zstandard.ZstdCompressionParameters.from_level(19, enable_ldm=True, window_log=27)
    return len(zstandard.ZstdCompressor(compression_params=params).compress(data))


def binary_stream(data: bytes, reuse: tuple[bytes, list] | None = None) -> bytes:
    """A stream of binary frames only (the smallest of zstd, lzma2, stored per frame), with a
    frame size of the whole input (up to the cap): the fallback when the hybrid path loses.
    ``reuse``: ``FrameEncoder.first`` of the hybrid stream, so that a one-frame input is not
    compressed twice (the output is the same either way)."""
    opts = Options(frame_size=max(1, min(len(data), MAX_FRAME_SIZE)))
    enc = FrameEncoder(Session(model=_NO_MODEL), opts, reuse=reuse)
    out = [enc.encode_frame(data[a:a + opts.frame_size], text=False)
           for a in range(0, len(data), opts.frame_size)]
    return b"".join(out) + enc.finish()


_NO_MODEL = os.devnull  # binary frames never load the model
GUARD_SLACK = 64  # bytes over zstd -19 that a hybrid stream may cost


def compress(data: bytes, session: Session, options: Options = Options(),
             progress: Progress | None = None, stats: dict | None = None) -> bytes:
    """Compress ``data`` into one nacrith stream (bytes).

    Text runs go to the LLM (untokenisable bytes escaped), binary runs to zstd / lzma2 / stored,
    chosen per frame by size; when a binary-only stream of the whole input (the smallest of
    zstd -19, lzma2 and stored per frame) is smaller, that is returned instead, so the result is
    never more than a few bytes of framing over the better of zstd -19 and xz -9e (lzma2 with
    xz -9e's own settings is ~48 bytes smaller than xz -9e's .xz file).

    Args:
        data: the input.
        session: model and contexts to use.
        options: encoder choices (``Options``).
        progress: called with the number of input bytes finished, as they finish.
        stats: optional dict, filled with ``tokens``/``skipped`` (LLM frames' tokens and those
            coded without the LLM) and ``frames`` (count per frame kind name).
    """
    enc = StreamEncoder(session, options, progress, stats)
    out = enc.feed(data) + enc.finish()
    alt = smaller_binary_stream(data, len(out), enc.enc.first)
    if alt is not None:
        out = alt
        if stats is not None:
            stats["fallback"] = True
    return out


def smaller_binary_stream(data: bytes, size: int, reuse: tuple[bytes, list] | None = None) -> bytes | None:
    """``binary_stream(data)`` when it is smaller than ``size`` bytes, else None. A hybrid stream
    loses to it when its binary runs, compressed apart, do worse than the whole input at once;
    since that stream is at most a few bytes of framing over the better of zstd -19 and xz -9e,
    this bounds every output."""
    if not data:
        return None
    alt = binary_stream(data, reuse)
    return alt if len(alt) < size else None


def iter_frames(data: bytes):
    """Parse ``data``: yield each data frame (``FrameHeader``, with the ``params`` in force), then
    the ``EndFrame``. Validates structure only (content checksums are the decoder's job).

    Raises:
        FormatError, TruncatedError: malformed stream.
    """
    buf = memoryview(data)
    header, pos = read_header(buf, 0)
    params = None
    seek_at = 0
    while True:
        if pos < len(buf) and buf[pos] == FRAME_PARAMS:
            params, pos = read_params(buf, pos)
            continue
        if pos < len(buf) and buf[pos] == FRAME_SEEK:
            seek_at = pos
            _, pos = read_seek_table(buf, pos, pos)
            continue
        fr, pos = read_frame(buf, pos, header.frame_size)
        if isinstance(fr, EndFrame):
            if pos != len(buf):
                raise FormatError(f"{len(buf) - pos} bytes of trailing data after the end frame")
            if fr.seek_offset != seek_at:
                raise FormatError(f"end frame points to a seek table at {fr.seek_offset}, found {seek_at}")
            yield fr
            return
        if fr.kind == FRAME_LLM:
            if params is None:
                raise FormatError(f"llm frame at offset {fr.offset} without a preceding params frame")
            fr.params = params
        yield fr


def decode_frame(session: Session, fr: FrameHeader, out_offset: int = 0,
                 progress: Progress | None = None) -> bytes:
    """Original bytes of one data frame, checksum verified.

    Raises FormatError (corrupt payload), ChecksumError, ModelMismatchError.
    """
    if fr.kind == FRAME_STORED:
        raw = bytes(fr.payload)
    elif fr.kind == FRAME_ZSTD:
        raw = _zstd_decompress(fr)
    elif fr.kind == FRAME_LZMA:
        raw = _lzma_decompress(fr)
    elif fr.kind == FRAME_LZMA2:
        raw = lzma2.decode(bytes(fr.payload), fr.raw_size, f"frame at offset {fr.offset}")
    else:
        raw = decode_llm_frame(session, fr, progress)
    if len(raw) != fr.raw_size or frame_checksum(raw) != fr.checksum:
        raise ChecksumError(f"frame at offset {fr.offset} ({FRAME_NAMES[fr.kind]}, output bytes "
                            f"{out_offset}..{out_offset + fr.raw_size}): checksum mismatch")
    if progress and fr.kind != FRAME_LLM:
        progress(len(raw))
    return raw


def _zstd_decompress(fr: FrameHeader) -> bytes:
    payload = bytes(fr.payload)
    try:
        # the zstd frame header may declare a content size, which zstandard would allocate
        # before decoding: it must be the frame's raw size (or absent)
        declared = zstandard.frame_content_size(payload)
        if declared not in (-1, fr.raw_size):
            raise FormatError(f"frame at offset {fr.offset}: zstd payload declares {declared} bytes, "
                              f"the frame {fr.raw_size}")
        return zstandard.ZstdDecompressor().decompress(payload, max_output_size=fr.raw_size)
    except zstandard.ZstdError as e:
        raise FormatError(f"frame at offset {fr.offset}: corrupt zstd payload ({e})") from None


def _lzma_decompress(fr: FrameHeader) -> bytes:
    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        raw = d.decompress(bytes(fr.payload), max_length=fr.raw_size + 1)
    except lzma.LZMAError as e:
        raise FormatError(f"frame at offset {fr.offset}: corrupt lzma payload ({e})") from None
    if not d.eof or d.unused_data:
        raise FormatError(f"frame at offset {fr.offset}: lzma payload does not end where it should")
    return raw


class FrameDecoder:
    """Incremental stream reader: ``feed(chunk)`` returns the original bytes of every frame that
    became complete (each verified against its checksum before it is returned); ``eof`` turns
    True after the end frame, whose whole-stream checksum is verified too. Memory: the input of
    at most one frame plus its output.
    """

    def __init__(self, session: Session, progress: Progress | None = None):
        self.session = session
        self.progress = progress
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._header = None
        self._params = None
        self._seek_at = 0
        self._hasher = total_hasher()
        self.size = 0  # bytes output so far
        self.eof = False
        self.unused_data = b""

    @property
    def needs_input(self) -> bool:
        return not self.eof

    def feed(self, data: bytes) -> bytes:
        if self.eof:
            self.unused_data += bytes(data)
            return b""
        self._buf += data
        out = []
        while not self.eof:
            try:
                chunk = self._step()
            except TruncatedError:
                break  # wait for more input
            if chunk:
                out.append(chunk)
        return b"".join(out)

    def _consume(self, end: int) -> None:
        del self._buf[:end]
        self._base += end

    def _parse(self):
        """Parse the next structure at the start of the buffer: (kind, object, length).
        Raises TruncatedError when the buffer does not hold all of it yet."""
        with memoryview(self._buf) as buf:
            if self._header is None:
                header, end = read_header(buf, 0)
                return "header", header, end
            if not len(buf):
                raise TruncatedError("truncated stream: no end frame")
            if buf[0] == FRAME_PARAMS:
                params, end = read_params(buf, 0)
                return "params", params, end
            if buf[0] == FRAME_SEEK:
                _, end = read_seek_table(buf, 0, self._base)
                return "seek", None, end
            fr, end = read_frame(buf, 0, self._header.frame_size)
            if isinstance(fr, FrameHeader):
                fr.payload = memoryview(bytes(fr.payload))  # detach from the buffer
            return "frame", fr, end

    def _step(self) -> bytes:
        what, obj, end = self._parse()
        if what == "header":
            self._header = obj
        elif what == "params":
            self._params = obj
        elif what == "seek":
            self._seek_at = self._base
        elif isinstance(obj, EndFrame):
            if obj.seek_offset != self._seek_at:
                raise FormatError(f"end frame points to a seek table at {obj.seek_offset}, "
                                  f"found {self._seek_at}")
            if obj.total_size != self.size or self._hasher.digest() != obj.checksum:
                raise ChecksumError(f"whole-stream checksum mismatch ({self.size} bytes decoded, "
                                    f"{obj.total_size} declared)")
            self.eof = True
            self.unused_data = bytes(self._buf[end:])
            self._consume(len(self._buf))
            return b""
        else:
            fr = obj
            fr.offset += self._base
            if fr.kind == FRAME_LLM:
                if self._params is None:
                    raise FormatError(f"llm frame at offset {fr.offset} without a preceding params frame")
                fr.params = self._params
            self._consume(end)
            raw = decode_frame(self.session, fr, self.size, self.progress)
            self._hasher.update(raw)
            self.size += len(raw)
            return raw
        self._consume(end)
        return b""

    def close(self) -> None:
        """Declare the input complete. Raises TruncatedError if the stream is incomplete."""
        if not self.eof:
            raise TruncatedError(f"truncated stream: input ends after {self._base + len(self._buf)} bytes, "
                                 "before the end frame")


def decompress(data: bytes, session: Session, progress: Progress | None = None) -> bytes:
    """Decompress a whole nacrith stream and verify every checksum.

    Raises:
        FormatError, TruncatedError: the stream is malformed (trailing data included).
        ChecksumError: a frame or the whole output does not match its checksum.
        ModelMismatchError: the stream needs another model or backend.
    """
    d = FrameDecoder(session, progress)
    if not data:
        raise TruncatedError("empty input: not a nacrith stream")
    out = d.feed(data)
    d.close()
    if d.unused_data:
        raise FormatError(f"{len(d.unused_data)} bytes of trailing data after the end frame")
    return out
