"""Resources and choices of a run: ``Options`` (what the encoder records) and ``Session`` (the
loaded model, llama.cpp contexts and worker processes, reused across calls).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import __version__
from .container import MAX_FRAME_SIZE, MAX_LANES, LLMParams, offload_name
from .errors import BackendError, FormatError, ModelMismatchError
from .model import (ATTENTION_MODES, DEFAULT_ATTENTION, Q8_ATTENTION, Attention, LlamaContext, Model, attention_kernel,
                    available, default_attention, default_gpu_layers, default_parallelism, default_threads)
from .params import DEFAULT_ENSEMBLE, EnsembleParams, Window


@dataclass(frozen=True)
class Options:
    """Encoder choices. Those the decoder needs are written to the stream header.

    window: sliding KV window per lane (tokens). ensemble: n-gram / bias / mixer / skip
    hyper-parameters (``EnsembleParams``; ``LLM_ONLY`` turns every head off).
    frame_size: most input bytes per frame.
    max_lanes: most lanes per frame; min_lane_tokens: a frame gets
    ``clamp(tokens // min_lane_tokens, 1, max_lanes)`` lanes. batch: tokens per llama_decode
    call when encoding (execution only; the logits do not depend on it).
    info: also record the model's name and the writer's version in the stream (informational,
    about 40 bytes; ``nacrith -l`` otherwise names a preset model from its id).
    kv_budget: KV cells one decode step may attend to across a frame's lanes: a frame of L
    lanes whose longest lane outgrows ``window`` gets the wider window ``Options.frame_window``
    picks (up to ``kv_budget / L`` tokens and the model's training context), so a small file of
    few lanes gets the long context its size makes affordable; 0: always ``window`` (pass it
    with a ``window`` meant for every frame: ``window`` alone is widened like the level's). An encoder
    choice: the window used is recorded per frame (the params in force), so decoders need none.
    attention: name of the llama.cpp attention settings (``nacrith.model.ATTENTION_MODES``:
    flash attention, K and V cache types, kernel); ``None``: the build's fastest
    (``nacrith.model.default_attention``). Recorded through the backend fingerprint.
    schedule: how the LLM is evaluated: ``None`` (the session decides: ``batched`` where
    ``nacrith.probe`` proved this model bit-exact under batching on this build, else
    ``lockstep``), ``lockstep`` (one token per lane per step on both sides: always lossless, slower)
    or ``batched`` (refused unless proven). Recorded in the stream.
    verify: decode every LLM frame right after coding it and keep it only if it gives the input
    back (a frame that does not is coded as a binary frame instead); costs a decode.
    """

    window: Window = field(default_factory=lambda: Window(1024, 4, 256))
    ensemble: EnsembleParams = DEFAULT_ENSEMBLE
    frame_size: int = 1 << 20
    max_lanes: int = 8
    min_lane_tokens: int = 8192  # alice29 50 KB: 1 lane 1.1395 bpb, 3 lanes 1.1488, 6 lanes 1.164
    batch: int = 256
    kv_budget: int = 8192  # alice29 50 KB, one lane: window 1024 1.1006 bpb, 8192 1.0821 (README)
    info: bool = False
    attention: str | None = None
    schedule: str | None = None
    verify: bool = False

    def __post_init__(self):
        if self.schedule not in (None, "batched", "lockstep"):
            raise ValueError(f"schedule must be None, 'batched' or 'lockstep', not {self.schedule!r}")
        if not isinstance(self.verify, bool):
            raise TypeError(f"verify must be a bool, not {type(self.verify).__name__}")
        if self.attention is not None and self.attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_MODES)}, not {self.attention!r}")
        if not isinstance(self.window, Window):
            raise TypeError(f"window must be a nacrith.Window, not {type(self.window).__name__}")
        if not isinstance(self.ensemble, EnsembleParams):
            raise TypeError(f"ensemble must be a nacrith.EnsembleParams, not {type(self.ensemble).__name__}")
        for name in ("frame_size", "max_lanes", "min_lane_tokens", "batch", "kv_budget"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name} must be an int, not {type(v).__name__}")
        if not 1 <= self.frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"frame_size must be in [1, {MAX_FRAME_SIZE}]")
        if not 1 <= self.max_lanes <= MAX_LANES:
            raise ValueError(f"max_lanes must be in [1, {MAX_LANES}]")
        if self.min_lane_tokens < 1 or self.batch < 1:
            raise ValueError("min_lane_tokens and batch must be >= 1")
        if not 0 <= self.kv_budget <= 1 << 20:
            raise ValueError("kv_budget must be in [0, 2^20]")

    def frame_window(self, lanes: int, longest: int, n_ctx_train: int = 0) -> Window:
        """The KV window of a frame of ``lanes`` lanes whose longest lane has ``longest`` tokens.

        ``window`` when ``kv_budget`` is 0 or the lane fits in it (then every wider window codes
        the same bits); otherwise the largest power of two ``W <= kv_budget / lanes`` (and
        ``<= n_ctx_train``, the model's training context, when > 0), if above ``window.size``,
        with the same sink and a slide of the same fraction of the window
        (``window.slide * W / window.size``). Deterministic in its arguments; the decoder reads
        the result from the stream."""
        w = self.window
        if not self.kv_budget or longest + 1 <= w.size:
            return w
        cap = self.kv_budget // max(1, lanes)
        if n_ctx_train > 0:
            cap = min(cap, n_ctx_train)
        if cap <= w.size:
            return w
        size = 1 << (cap.bit_length() - 1)
        if size <= w.size:
            return w
        return Window(size, w.sink, w.slide * size // w.size)

    @classmethod
    def from_level(cls, level: int | None = None, **fields) -> "Options":
        """The options of compression level ``level`` (1 fastest .. 9 best ratio; ``None``:
        ``DEFAULT_LEVEL``), with ``fields`` (any ``Options`` field) replacing the level's values.
        A level only picks recorded settings, so decompression never needs it.

        Raises ValueError for a level outside 1..9, TypeError for one that is not an int."""
        if level is None:
            level = DEFAULT_LEVEL
        if not isinstance(level, int) or isinstance(level, bool):
            raise TypeError(f"level must be an int, not {type(level).__name__}")
        if level not in LEVELS:
            raise ValueError(f"level must be in 1..9, not {level}")
        return cls(**{**LEVELS[level], **fields})


def _level(window: Window, min_lane_tokens: int, max_lanes: int = 8, ensemble: EnsembleParams = DEFAULT_ENSEMBLE,
           kv_budget: int = 0):
    return dict(window=window, min_lane_tokens=min_lane_tokens, max_lanes=max_lanes, ensemble=ensemble,
                kv_budget=kv_budget)


# Compression levels, as zstd's and xz's: each a preset of recorded settings. Speed comes from a
# smaller KV window (attention costs per cached position) and more, shorter lanes (decoding
# batches one token of every lane per llama_decode); ratio from the opposite. Levels 6..9 widen
# the window of frames with few lanes up to 8192 KV cells per step (Options.frame_window): a
# one-lane frame (< 16,384 tokens) gets the model's whole 8k context, a frame of 5+ lanes keeps
# the level's window. Measured: bench/results/speed.md ("Levels").
LEVELS = {
    1: _level(Window(256, 4, 64), 1024, 16),
    2: _level(Window(512, 4, 128), 1024, 16),
    3: _level(Window(512, 4, 128), 2048),
    4: _level(Window(1024, 4, 256), 2048),
    5: _level(Window(1024, 4, 256), 4096),
    6: _level(Window(1024, 4, 256), 8192, kv_budget=8192),
    7: _level(Window(2048, 4, 512), 8192, kv_budget=8192),
    8: _level(Window(2048, 4, 512), 16384, kv_budget=8192),
    9: _level(Window(4096, 4, 1024), 32768, kv_budget=8192),
}
DEFAULT_LEVEL = 6
"""The level ``Options()`` has (its field defaults are level 6's)."""


class Session:
    """A loaded model, llama.cpp contexts and the frame executor, reused across calls (load once,
    code many).

    Args:
        model: GGUF path (``None``: ``--model``/``NACRITH_MODEL``/embedded default order) or a
            loaded ``Model``.
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

    The model is loaded on first use, so decoding streams without LLM frames needs none.
    Raises ValueError for workers < 1 or threads < 1.
    """

    def __init__(self, model: str | os.PathLike | Model | None = None, *, threads: int | None = None,
                 workers: int | None = None, gpu_layers: int | None = None, cluster: str | None = None):
        self._model = model if isinstance(model, Model) else None
        self._model_path = None if isinstance(model, Model) else model
        self._own_model = not isinstance(model, Model)
        self.cluster = cluster if cluster is not None else (os.environ.get("NACRITH_CLUSTER") or None)
        for name, v in (("workers", workers), ("threads", threads), ("gpu_layers", gpu_layers)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                raise TypeError(f"{name} must be an int, not {type(v).__name__}")
        if workers is not None and workers < 1:
            raise ValueError("workers must be >= 1")
        if threads is not None and threads < 1:
            raise ValueError("threads must be >= 1")
        auto_workers, auto_threads = default_parallelism()
        if self.cluster:
            self.workers = int(workers) if workers else None  # None: from the cluster's resources
            self.threads = int(threads) if threads else 1
        else:
            self.workers = int(workers) if workers else (auto_workers if not threads else 1)
            self.threads = int(threads) if threads else max(1, auto_threads if self.workers == auto_workers
                                                           else default_threads() // self.workers)
        if gpu_layers:
            from .backend import supports_gpu_offload

            if not supports_gpu_offload():
                raise BackendError(f"--gpu-layers {int(gpu_layers)}: this llama.cpp build has no GPU backend "
                                   "(llama_supports_gpu_offload is false); use --gpu-layers 0 or a GPU build")
        self.gpu_layers = default_gpu_layers() if gpu_layers is None else int(gpu_layers)
        self.gpu_explicit = gpu_layers is not None
        self._ctx: LlamaContext | None = None
        self._fingerprint: str | None = None
        self._executor = None
        self._inline = None
        self._verdicts: dict = {}
        self.closed = False

    def check_open(self) -> None:
        """Raise ValueError when the session was closed (like a closed file)."""
        if self.closed:
            raise ValueError("I/O operation on a closed Session")

    def inline(self):
        """The executor that codes frames in this process."""
        self.check_open()
        if self._inline is None:
            from .workers import InlineExecutor

            self._inline = InlineExecutor(self)
        return self._inline

    def executor(self):
        """Where frames run (``nacrith.workers``): in this process with one worker and no
        cluster, else worker processes or Ray actors (started on first use, each loading the
        model once and checked against this process's model and backend)."""
        self.check_open()
        if self._executor is None:
            if not self.cluster and self.workers == 1:
                self._executor = self.inline()
            else:
                from . import workers

                expect = (self.model.sha256, self.identity)
                path = str(self.model.path)
                if self.cluster:
                    self._executor = workers.RayExecutor(self.cluster, path, self.workers, self.threads,
                                                         self._worker_gpu_layers, expect)
                else:
                    self._executor = workers.ProcessExecutor(path, self.workers, self.threads,
                                                             self._worker_gpu_layers, expect)
        return self._executor

    @property
    def _worker_gpu_layers(self) -> int | None:
        return self.gpu_layers if self.gpu_explicit else None

    def _switch_offload(self, offload: int) -> bool:
        """Reload the model with ``offload`` GPU layers, if the user left the offload to us and
        this build can do it. Returns whether it did."""
        from .backend import supports_gpu_offload

        if self.gpu_explicit or not self._own_model or (offload and not supports_gpu_offload()):
            return False
        path = self._model.path if self._model is not None else self._model_path
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
        if self._model is not None:
            self._model.close()
        self._model = Model(path, n_gpu_layers=offload)
        self._model_path = path
        self.gpu_layers = offload
        self._fingerprint = None
        return True

    @property
    def model(self) -> Model:
        self.check_open()
        if self._model is None:
            self._model = Model(self._model_path, n_gpu_layers=self.gpu_layers)
        return self._model

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from .backend import fingerprint

            self._fingerprint = fingerprint(self.model.n_gpu_layers, Q8_ATTENTION)  # as version 1 has it
        return self._fingerprint

    def context(self, n_seq: int, window: Window, n_batch: int, tokens: int | None = None,
                attention: Attention = DEFAULT_ATTENTION) -> LlamaContext:
        """A context with at least ``n_seq`` sequences of enough KV cells (cached): the frame's
        longest lane (``tokens``: no position reaches it) capped by ``window.size``, so a tiny
        frame with a huge window field allocates little. Cells are rounded up to 256."""
        self.check_open()
        c = self._ctx
        need = window.size if tokens is None else max(1, min(window.size, tokens))
        cells = (need + 255) // 256 * 256
        if (c is None or c.n_seq < n_seq or c.n_ctx_seq != cells or c.n_batch < n_batch
                or c.attention != attention):
            if c is not None:
                c.close()
            self._ctx = None
            c = self._ctx = LlamaContext(self.model, n_seq=n_seq, n_ctx_seq=cells,
                                         n_batch=n_batch, n_threads=self.threads, attention=attention)
        return c

    def resolve(self, options: Options) -> Options:
        """``options`` with its attention mode named (the build's default when ``None``) and its
        schedule decided (``verdict``: ``batched`` only where proven; always ``lockstep`` with
        layers on a GPU, whose kernels are chosen by batch shape). Resolved options are what
        workers get, so every frame of a stream is coded alike.

        Raises BackendError when this build cannot run the named mode, or ``batched`` is asked
        for a model not proven batch-invariant here."""
        from dataclasses import replace

        if options.attention is None:
            options = replace(options, attention=default_attention(bool(self.gpu_layers)).name)
        elif not available(ATTENTION_MODES[options.attention]):
            raise BackendError(f"attention mode {options.attention} needs nacrith's attention kernel, "
                               "which this llama.cpp build lacks; rebuild with ./install.sh")
        if options.schedule == "lockstep":
            return options
        proven = self.verdict(ATTENTION_MODES[options.attention]).schedule == "batched"
        if options.schedule == "batched" and not proven:
            raise BackendError(f"{self.model.path}: batched encoding is not proven bit-exact for this model "
                               "on this build (nacrith --check-model); use the lockstep schedule")
        return replace(options, schedule="batched" if proven else "lockstep")

    def verdict(self, attention: Attention):
        """Whether batched encoding is bit-exact for this model with ``attention`` on this build
        (``nacrith.probe.verdict``, cached on disk; probed at most once per session). Layers on a
        GPU are never probed: they always get the lockstep schedule."""
        from . import probe

        key = attention.name
        if key not in self._verdicts:
            if self.model.n_gpu_layers:
                self._verdicts[key] = probe.Verdict(probe.LOCKSTEP, "layers run on a GPU, whose kernels "
                                                    "are chosen by batch shape")
            else:
                self._verdicts[key] = probe.verdict(self.model, attention, self.threads)
        return self._verdicts[key]

    @property
    def identity(self) -> str:
        """What every worker's backend must share with the driver's: the fingerprint and the
        patched kernel compiled in."""
        return f"{self.fingerprint}; kernel={attention_kernel() or 'stock'};{self.model.kernel_record or ' mm=any'}"

    def params(self, options: Options) -> LLMParams:
        """The params of LLM frames coded by this session with ``options`` (format version 2)."""
        from .backend import fingerprint, fingerprint_id

        from .container import SCHEDULE_BATCHED, SCHEDULE_LOCKSTEP

        m = self.model
        options = self.resolve(options)
        build = fingerprint(None, ATTENTION_MODES[options.attention], m.kernel_record)
        return LLMParams(bytes.fromhex(m.sha256)[:16], fingerprint_id(build), options.window,
                         options.ensemble, m.n_gpu_layers, model_name=m.label if options.info else "",
                         writer=f"nacrith {__version__}" if options.info else "",
                         schedule=SCHEDULE_BATCHED if options.schedule == "batched" else SCHEDULE_LOCKSTEP)

    def check(self, params: LLMParams, where: str = "") -> Attention:
        """The attention settings of ``params``' LLM frames (found from their backend id).

        Raises ``ModelMismatchError`` unless this session can decode them, naming the model,
        build or ``--gpu-layers`` setting the stream needs."""
        from .backend import fingerprint, fingerprint_id, supports_gpu_offload

        m = self.model
        if params.model_id != bytes.fromhex(m.sha256)[:16]:
            raise ModelMismatchError(
                f"{where}stream was made with model {params.model_label} "
                f"(sha256 {params.model_id.hex()}...), but the loaded model is {m.label} "
                f"(sha256 {m.sha256[:32]}..., {m.path}); pass --model")
        if params.version == 1:
            if params.backend_id != fingerprint_id(self.fingerprint):
                raise ModelMismatchError(
                    f"{where}stream was made on backend [{params.backend}, id {params.backend_id.hex()}] "
                    f"but this one is [{self.fingerprint}, id {fingerprint_id(self.fingerprint).hex()}]; "
                    "decode it with the same llama.cpp build and device")
            if params.n_vocab != m.n_vocab or params.bos != m.bos:
                raise FormatError(f"{where}vocabulary parameters do not match the model")
            return Q8_ATTENTION  # version 1 had no other
        builds = {fingerprint_id(fingerprint(None, a, m.kernel_record)): a for a in ATTENTION_MODES.values()}
        build = fingerprint(None, DEFAULT_ATTENTION, m.kernel_record)
        if params.backend_id not in builds:
            raise ModelMismatchError(
                f"{where}stream was made with the llama.cpp build [{params.backend_label}], but this one "
                f"is [{build}, id {fingerprint_id(build).hex()}]; decode it with that build (install.sh pins it)")
        if (params.offload or 0) != (m.n_gpu_layers or 0) and not self._switch_offload(params.offload or 0):
            raise ModelMismatchError(
                f"{where}stream was made on {offload_name(params.offload)}, this session runs on "
                f"{offload_name(m.n_gpu_layers)}; " + (
                    f"decode with --gpu-layers {params.offload}" if not params.offload or supports_gpu_offload()
                    else "this llama.cpp build has no GPU backend: decode on a GPU build of the same "
                         "llama.cpp (NACRITH_CUDA=1 ./install.sh)"))
        mode = builds[params.backend_id]
        if not available(mode):
            raise ModelMismatchError(
                f"{where}stream was made with nacrith's attention kernel {mode.kernel} (attention {mode.name}), "
                "which this llama.cpp build lacks; rebuild llama-cpp-python with ./install.sh")
        return mode

    def close(self) -> None:
        """Stop the workers and free the model and contexts; later use raises ValueError."""
        self.closed = True
        if self._executor is not None:
            self._executor.close()
            self._executor = None
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
        if self._model is not None:
            self._model.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
