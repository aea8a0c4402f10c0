"""Compress and decompress whole buffers: frames, the LLM frame codec and its fallbacks.

A stream is ``header, frame*, end`` (``nacrith.container``, ``codec/FORMAT.md``). Each frame
covers at most ``frame_size`` input bytes and is coded by the smallest of:

* ``llm``: tokens of the frame (only if the tokenizer reproduces the bytes exactly) split into
  lanes, each lane arithmetic-coded with the LLM's quantised softmax (``nacrith.lanes``);
* ``zstd``: zstandard level 19;
* ``stored``: the bytes as they are.

Every frame carries a checksum of its original bytes and the end frame one of the whole input;
both are verified on decoding before anything is returned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import zstandard

from . import __version__
from .coder import Decoder, Encoder
from .container import (FRAME_LLM, FRAME_NAMES, FRAME_PARAMS, FRAME_STORED, FRAME_ZSTD,
                        MAX_FRAME_SIZE, MAX_LANES, EndFrame, FrameHeader, LLMParams, StreamHeader,
                        frame_checksum, read_frame, read_header, read_llm_payload, read_params,
                        total_hasher, write_end, write_frame, write_llm_payload)
from .ensemble import EnsembleParams
from .errors import ChecksumError, FormatError, ModelMismatchError
from .lanes import Window, decode_lanes, encode_lanes
from .model import LlamaContext, Model, default_threads

Progress = Callable[[int], None]
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
    max_lanes: int = 1
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
        gpu_layers: layers offloaded to a GPU backend (0: CPU).

    The model is loaded on first use, so decoding streams without LLM frames needs none.
    """

    def __init__(self, model: str | os.PathLike | Model | None = None, *, threads: int | None = None,
                 gpu_layers: int = 0):
        self._model = model if isinstance(model, Model) else None
        self._model_path = None if isinstance(model, Model) else model
        self.threads = threads or default_threads()
        self.gpu_layers = gpu_layers
        self._ctx: LlamaContext | None = None
        self._fingerprint: str | None = None

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
        m = self.model
        return LLMParams(bytes.fromhex(m.sha256), self.fingerprint, m.n_vocab, m.bos,
                         options.window, options.ensemble, m.name, f"nacrith {__version__}")

    def check(self, params: LLMParams, where: str = "") -> None:
        """Raise ``ModelMismatchError`` unless this session can decode ``params``' LLM frames."""
        m = self.model
        if params.model_sha256 != bytes.fromhex(m.sha256):
            raise ModelMismatchError(
                f"{where}stream was made with model {params.model_name or '?'} "
                f"(sha256 {params.model_sha256.hex()[:16]}...), but the loaded model is {m.name} "
                f"(sha256 {m.sha256[:16]}..., {m.path}); pass --model")
        if params.backend != self.fingerprint:
            raise ModelMismatchError(
                f"{where}stream was made on backend [{params.backend}] but this one is "
                f"[{self.fingerprint}]; decode it with the same llama.cpp build and device")
        if params.n_vocab != m.n_vocab or params.bos != m.bos:
            raise FormatError(f"{where}vocabulary parameters do not match the model")

    def close(self) -> None:
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


def encode_llm_frame(session: Session, raw: bytes, options: Options,
                     progress: Progress | None = None) -> bytes | None:
    """LLM payload for ``raw``, or ``None`` when its tokens do not reproduce it exactly."""
    m = session.model
    tokens = m.tokenize(raw)
    if len(tokens) == 0 or m.detokenize(tokens) != raw:
        return None
    lanes = split_lanes(tokens, options)
    ctx = session.context(len(lanes), options.window, options.batch)
    encoders = [Encoder() for _ in lanes]
    models = [options.ensemble.lane_model(m.n_vocab) for _ in lanes]
    lens = m.token_lens

    def consume(lane: int, t0: int, logits: np.ndarray) -> None:
        syms = lanes[lane][t0:t0 + len(logits)]
        models[lane].encode_block(encoders[lane], logits, syms)
        if progress:
            progress(int(lens[syms].sum()))

    encode_lanes(ctx, lanes, m.bos, options.window, consume)
    return write_llm_payload([len(x) for x in lanes], [e.finish() for e in encoders])


def decode_llm_frame(session: Session, fr: FrameHeader, progress: Progress | None = None) -> bytes:
    """Decode one LLM frame (``fr.params`` must be set). The checksum is checked by the caller."""
    params, raw_size, offset = fr.params, fr.raw_size, fr.offset
    counts, streams = read_llm_payload(fr.payload, raw_size, offset)
    session.check(params, f"frame at offset {offset}: ")
    m = session.model
    ctx = session.context(len(counts), params.window, max(len(counts), 1))
    decoders = [Decoder(bytes(s)) for s in streams]
    models = [params.ensemble.lane_model(m.n_vocab) for _ in streams]
    lens = m.token_lens
    done = [0]

    def needs_llm(lane: int) -> bool:
        return not models[lane].prepare()

    def choose(lane: int, logits: np.ndarray | None) -> int:
        t = models[lane].decode(decoders[lane], logits)
        done[0] += int(lens[t])
        if done[0] > raw_size:
            raise ChecksumError(f"frame at offset {offset}: decoded more than {raw_size} bytes (corrupt)")
        if progress:
            progress(int(lens[t]))
        return t

    lanes = decode_lanes(ctx, counts, m.bos, params.window, choose, needs_llm)
    return m.detokenize(np.concatenate(lanes) if lanes else [])


def compress(data: bytes, session: Session, options: Options = Options(),
             progress: Progress | None = None) -> bytes:
    """Compress ``data`` into one nacrith stream (bytes).

    Args:
        data: the input.
        session: model and contexts to use (the model is loaded only if some frame is text).
        options: encoder choices (``Options``).
        progress: called with the number of input bytes finished, as they finish.
    """
    out = [StreamHeader(options.frame_size).encode()]
    params_frame, params_written = None, False  # written once, before the first LLM frame
    hasher = total_hasher()
    zc = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    view = memoryview(data)
    for start in range(0, len(data), options.frame_size):
        raw = bytes(view[start:start + options.frame_size])
        hasher.update(raw)
        candidates = [(len(raw), FRAME_STORED, raw)]
        z = zc.compress(raw)
        candidates.append((len(z), FRAME_ZSTD, z))
        done = [0]

        def prog(n, done=done):
            done[0] += n
            if progress:
                progress(n)

        llm = encode_llm_frame(session, raw, options, prog)
        if llm is not None:
            params_frame = params_frame or session.params(options).encode()
            candidates.append((len(llm) + (0 if params_written else len(params_frame)), FRAME_LLM, llm))
        if progress and done[0] < len(raw):
            progress(len(raw) - done[0])
        _, kind, payload = min(candidates, key=lambda c: (c[0], c[1]))
        if kind == FRAME_LLM and not params_written:
            out.append(params_frame)
            params_written = True
        out.append(write_frame(kind, raw, payload))
    out.append(write_end(len(data), hasher.digest()))
    return b"".join(out)


def iter_frames(data: bytes):
    """Parse ``data``: yield each data frame (``FrameHeader``, with the ``params`` in force), then
    the ``EndFrame``. Validates structure only (content checksums are the decoder's job).

    Raises:
        FormatError, TruncatedError: malformed stream.
    """
    buf = memoryview(data)
    header, pos = read_header(buf, 0)
    params = None
    while True:
        if pos < len(buf) and buf[pos] == FRAME_PARAMS:
            params, pos = read_params(buf, pos)
            continue
        fr, pos = read_frame(buf, pos, header.frame_size)
        if isinstance(fr, EndFrame):
            if pos != len(buf):
                raise FormatError(f"{len(buf) - pos} bytes of trailing data after the end frame")
            yield fr
            return
        if fr.kind == FRAME_LLM:
            if params is None:
                raise FormatError(f"llm frame at offset {fr.offset} without a preceding params frame")
            fr.params = params
        yield fr


def decompress(data: bytes, session: Session, progress: Progress | None = None) -> bytes:
    """Decompress a whole nacrith stream and verify every checksum.

    Raises:
        FormatError, TruncatedError: the stream is malformed.
        ChecksumError: a frame or the whole output does not match its checksum.
        ModelMismatchError: the stream needs another model or backend.
    """
    out = []
    hasher = total_hasher()
    size = 0
    dz = zstandard.ZstdDecompressor()
    for fr in iter_frames(data):
        if isinstance(fr, EndFrame):
            if fr.total_size != size or hasher.digest() != fr.checksum:
                raise ChecksumError(f"whole-stream checksum mismatch ({size} bytes decoded, "
                                    f"{fr.total_size} declared)")
            return b"".join(out)
        if fr.kind == FRAME_STORED:
            raw = bytes(fr.payload)
        elif fr.kind == FRAME_ZSTD:
            try:
                raw = dz.decompress(bytes(fr.payload), max_output_size=fr.raw_size)
            except zstandard.ZstdError as e:
                raise FormatError(f"frame at offset {fr.offset}: corrupt zstd payload ({e})") from None
        else:
            raw = decode_llm_frame(session, fr, progress)
        if len(raw) != fr.raw_size or frame_checksum(raw) != fr.checksum:
            raise ChecksumError(f"frame at offset {fr.offset} ({FRAME_NAMES[fr.kind]}, output bytes "
                                f"{size}..{size + fr.raw_size}): checksum mismatch")
        if progress and fr.kind != FRAME_LLM:
            progress(len(raw))
        hasher.update(raw)
        size += len(raw)
        out.append(raw)
    raise FormatError("stream has no end frame")  # pragma: no cover - iter_frames raises first
