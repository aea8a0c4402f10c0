"""The Engine: one loaded model and its llama.cpp contexts, the choices they imply (attention
mode, evaluation schedule, stream params) and the checks a decoder makes. Below the codec: the
LLM frame codec (``nacrith.llm_frame``) runs on an Engine, in this process or on a worker
(``nacrith.executors`` gives each worker one); ``nacrith.session.Session`` is an Engine with
frame executors.
"""

from __future__ import annotations

import os
from dataclasses import replace

from ._version import __version__
from .errors import BackendError, FormatError, ModelMismatchError
from .format import SCHEDULE_BATCHED, SCHEDULE_LOCKSTEP, LLMParams
from .model import (ATTENTION_MODES, DEFAULT_ATTENTION, Q8_ATTENTION, Attention, LlamaContext, Model, attention_kernel,
                    available, default_attention, default_gpu_layers, default_threads)
from .options import Execution, Options
from .params import Window


def offload_name(n: int | None) -> str:
    """The device a stream's LLM frames ran on, as the option that selects it."""
    return "cpu (--gpu-layers 0)" if not n else "gpu, all layers (--gpu-layers -1)" if n < 0 else \
        f"gpu, {n} layers (--gpu-layers {n})"


class Engine:
    """A model (loaded on first use), one cached llama.cpp context, and the checks tied to them.

    Args:
        model: GGUF path (``None``: ``NACRITH_MODEL``, else the embedded default) or a loaded
            ``Model``.
        threads: llama.cpp threads (default: the cores this process may use).
        gpu_layers: layers offloaded to a GPU backend (0: CPU, -1: all; default: all when the build
            has a GPU backend, else 0; when not given, a decoder switches to the offload a stream
            records, so decoding needs no flag).
        execution: execution switches (``Execution``: drafts); they change no bit.

    Raises TypeError / ValueError for bad arguments, BackendError for an offload this build
    cannot do.
    """

    def __init__(self, model: str | os.PathLike | Model | None = None, *, threads: int | None = None,
                 gpu_layers: int | None = None, execution: Execution | None = None):
        for name, v in (("threads", threads), ("gpu_layers", gpu_layers)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                raise TypeError(f"{name} must be an int, not {type(v).__name__}")
        if threads is not None and threads < 1:
            raise ValueError("threads must be >= 1")
        self._model = model if isinstance(model, Model) else None
        self._model_path = None if isinstance(model, Model) else model
        self._own_model = not isinstance(model, Model)
        self.threads = int(threads) if threads else default_threads()
        if gpu_layers:
            from .backend import supports_gpu_offload

            if not supports_gpu_offload():
                raise BackendError(f"--gpu-layers {int(gpu_layers)}: this llama.cpp build has no GPU backend "
                                   "(llama_supports_gpu_offload is false); use --gpu-layers 0 or a GPU build")
        self.gpu_layers = default_gpu_layers() if gpu_layers is None else int(gpu_layers)
        self.gpu_explicit = gpu_layers is not None
        self.execution = execution or Execution()
        self._ctx: LlamaContext | None = None
        self._fingerprint: str | None = None
        self._verdicts: dict = {}
        self.closed = False

    def check_open(self) -> None:
        """Raise ValueError when the engine was closed (like a closed file)."""
        if self.closed:
            raise ValueError("I/O operation on a closed Session")

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
        """The params of LLM frames coded by this engine with ``options`` (format version 2)."""
        from .backend import fingerprint, fingerprint_id

        m = self.model
        options = self.resolve(options)
        build = fingerprint(None, ATTENTION_MODES[options.attention], m.kernel_record, gpu=bool(m.n_gpu_layers))
        return LLMParams(bytes.fromhex(m.sha256)[:16], fingerprint_id(build), options.window,
                         options.ensemble, m.n_gpu_layers, model_name=m.label if options.info else "",
                         writer=f"nacrith {__version__}" if options.info else "",
                         schedule=SCHEDULE_BATCHED if options.schedule == "batched" else SCHEDULE_LOCKSTEP)

    def check(self, params: LLMParams, where: str = "") -> Attention:
        """The attention settings of ``params``' LLM frames (found from their backend id).

        Raises ``ModelMismatchError`` unless this engine can decode them, naming the model,
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
        if (params.offload or 0) != (m.n_gpu_layers or 0) and not self._switch_offload(params.offload or 0):
            raise ModelMismatchError(
                f"{where}stream was made on {offload_name(params.offload)}, this session runs on "
                f"{offload_name(m.n_gpu_layers)}; " + (
                    f"decode with --gpu-layers {params.offload}" if not params.offload or supports_gpu_offload()
                    else "this llama.cpp build has no GPU backend: decode on a GPU build of the same "
                         "llama.cpp (NACRITH_CUDA=1 ./install.sh)"))
        m = self.model  # reloaded if the offload was switched
        gpu = bool(params.offload)
        builds = {fingerprint_id(fingerprint(None, a, m.kernel_record, gpu=gpu)): a for a in ATTENTION_MODES.values()}
        build = fingerprint(None, DEFAULT_ATTENTION, m.kernel_record, gpu=gpu)
        if params.backend_id not in builds:
            raise ModelMismatchError(
                f"{where}stream was made with the llama.cpp build [{params.backend_label}], but this one "
                f"is [{build}, id {fingerprint_id(build).hex()}]; decode it with that build (install.sh pins it)")
        mode = builds[params.backend_id]
        if not available(mode):
            raise ModelMismatchError(
                f"{where}stream was made with nacrith's attention kernel {mode.kernel} (attention {mode.name}), "
                "which this llama.cpp build lacks; rebuild llama-cpp-python with ./install.sh")
        return mode

    def close(self) -> None:
        """Free the contexts and the model; later use raises ValueError."""
        self.closed = True
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
        if self._model is not None and self._own_model:
            self._model.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
