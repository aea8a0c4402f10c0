"""The LLM predictor: a GGUF model served through llama.cpp's low-level API.

``Model`` owns the ``llama_model`` and its vocabulary (tokenizer, token byte table, sha256);
``LlamaContext`` owns one ``llama_context`` whose sequences are nacrith's lanes. The library
itself, nacrith's kernels in it and model files are ``nacrith.runtime``.

Bit-exactness: the encoder evaluates tokens in large batches, the decoder one token per lane per
step. That is only lossless if llama.cpp returns the same logits for a token whatever the batch
shape: ``nacrith.probe`` proves it per model and build (else both sides use the decoder's
schedule), ``tests/test_kernels_invariance.py`` asserts it for the attention modes. The context settings
are fixed here and are part of the backend fingerprint (``nacrith.backend``).

Source: llama.cpp ``include/llama.h`` (llama_decode, llama_batch, llama_get_logits_ith,
llama_memory_seq_rm / llama_memory_seq_add), ``examples/simple/simple.cpp`` lifecycle.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from .errors import BackendError
from .params import (ATTENTION_MODES, DEFAULT_ATTENTION, FAST_ATTENTION, FAST_KERNEL, Q8_ATTENTION,  # noqa: F401
                     Attention)
from .runtime import (ATTN_ROT_ENV, ATTN_ROT_VALUE, DEFAULT_MODEL_FILE, DEFAULT_MODEL_PACKAGE, GGML_TYPE_NAMES,  # noqa: F401
                      GGML_TYPES, INSTALL_HINT, TILED_TYPES, attention_kernel, available, cache_dir, default_attention,
                      default_gpu_layers, default_model_path, default_parallelism, default_threads, file_sha256,
                      ggml_cpu_library, gguf_weight_types, invariant_products, llama, matmul_chunks, matmul_kernel,
                      resolve_model_path, set_invariant_products, set_matmul_kernel)


class _Closing:
    """``close()`` on ``with`` exit and on garbage collection (one owner per C handle)."""

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Model(_Closing):
    """A GGUF model loaded through llama.cpp, with its tokenizer.

    Args:
        path: GGUF file; ``None`` resolves as ``resolve_model_path``.
        n_gpu_layers: layers to offload to a GPU backend (0 = CPU only).
        repack: llama.cpp's repacked weight layouts (its default; other bits for Q4_0, Q4_K and
            IQ4_NL): only for stock reference timings (``bench/reference.py``), never for coding.

    Attributes:
        path (Path), sha256 (str, hex), n_vocab (int), bos (int token id),
        name (str, the model's ``general.name`` or file name).

    Raises:
        ModelNotFoundError: no model file.
        BackendError: llama.cpp could not load it (not a GGUF, unsupported architecture).
    """

    def __init__(self, path: str | os.PathLike | None = None, *, n_gpu_layers: int = 0, repack: bool = False):
        L = llama()
        self.path = resolve_model_path(path)
        self.n_gpu_layers = int(n_gpu_layers)
        self._model = None
        self._token_bytes: list[bytes] | None = None
        self._token_lens: np.ndarray | None = None
        self._sha256: str | None = None
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = self.n_gpu_layers if self.n_gpu_layers >= 0 else 1 << 30
        mp.use_mmap = True
        # no repacked weight layouts (Q4_0, Q4_K, IQ4_NL on AVX2): their GEMM and GEMV accumulate
        # in different orders; every product then goes through ggml_compute_forward_mul_mat,
        # where nacrith-mm-2 keeps it batch-invariant (the default model's Q4_1 and Q8_0 were
        # never repacked: its bits are unchanged)
        mp.use_extra_bufts = bool(repack)
        self._model = L.llama_model_load_from_file(str(self.path).encode(), mp)
        if not self._model:
            raise BackendError(f"{self.path}: llama.cpp could not load this file as a GGUF model")
        self._vocab = L.llama_model_get_vocab(self._model)
        self.n_vocab = int(L.llama_vocab_n_tokens(self._vocab))
        self.n_ctx_train = int(L.llama_model_n_ctx_train(self._model))  # tokens it was trained on
        self.bos = int(L.llama_vocab_bos(self._vocab))
        if self.bos < 0:
            self.bos = 0
        buf = ctypes.create_string_buffer(256)
        n = L.llama_model_meta_val_str(self._model, b"general.name", buf, 256)
        self.name = buf.value.decode("utf-8", "replace") if n > 0 else self.path.name

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.path)
        return self._sha256

    @property
    def weight_types(self) -> frozenset:
        """ggml type names (``Q4_1``, ``F16``, ...) of the model's weight matrices (tensors of two
        or more dimensions), read from the GGUF header (``gguf_weight_types``)."""
        if getattr(self, "_weight_types", None) is None:
            self._weight_types = gguf_weight_types(self.path)
        return self._weight_types

    @property
    def kernel_record(self) -> str:
        """What the backend fingerprint of this model's streams adds for its weight products:
        "" when every weight matrix is of a ``TILED_TYPES`` type (the same bits on any build of
        this llama.cpp), else `` mm=MARKER`` (nacrith-mm-2's invariant routing changes the bits of
        the other types; ``mm=stock`` on a build without it)."""
        if self.weight_types <= TILED_TYPES:
            return ""
        return f" mm={matmul_kernel() or 'stock'}"

    @property
    def label(self) -> str:
        """The model's one name in messages, listings and ``--info`` streams: the preset's name
        when the file is a model preset of the format (``SmolLM2-135M-Instruct Q4_1``), else its
        ``general.name`` (else its file name)."""
        from .format import MODEL_PRESETS

        known = {sha: name for sha, name in MODEL_PRESETS.values()}
        return known.get(self.sha256, self.name)

    @property
    def token_bytes(self) -> list[bytes]:
        """The bytes of every token id (``llama_token_to_piece``, special tokens rendered empty)."""
        if self._token_bytes is None:
            L = llama()
            size = 256
            buf = ctypes.create_string_buffer(size)
            out = []
            for t in range(self.n_vocab):
                n = L.llama_token_to_piece(self._vocab, t, buf, size, 0, False)
                if n < 0:  # larger than the buffer: grow and retry
                    size = -n + 16
                    buf = ctypes.create_string_buffer(size)
                    n = L.llama_token_to_piece(self._vocab, t, buf, size, 0, False)
                out.append(buf.raw[:max(n, 0)])
            self._token_bytes = out
            self._token_lens = np.fromiter((len(b) for b in out), dtype=np.int64, count=len(out))
        return self._token_bytes

    @property
    def missing_bytes(self) -> frozenset:
        """Byte values that no single-byte token represents (the tokenizer cannot emit them)."""
        if getattr(self, "_missing", None) is None:
            single = {b[0] for b in self.token_bytes if len(b) == 1}
            self._missing = frozenset(set(range(256)) - single)
        return self._missing

    @property
    def token_lens(self) -> np.ndarray:
        """int64 array (n_vocab,): byte length of every token."""
        if self._token_lens is None:
            self.token_bytes
        return self._token_lens

    def tokenize(self, data: bytes) -> np.ndarray:
        """Token ids of ``data`` (no BOS, special-token text kept as ordinary text).

        Returns int32 array of shape (n_tokens,). The result may not reproduce ``data`` (bytes
        without a token): callers check with ``detokenize``.

        Raises ValueError when ``data`` is not valid UTF-8 (RFC 3629): llama.cpp's tokenizer
        (C++) decodes some invalid sequences into code points above U+10FFFF and then throws
        ``std::invalid_argument`` through the C API, which aborts the process, so it never sees
        them (``nacrith.segment`` escapes such bytes).
        """
        L = llama()
        if not data:
            return np.zeros(0, dtype=np.int32)
        if not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"not valid UTF-8 at byte {e.start}: not given to llama.cpp's tokenizer") from None
        cap = len(data) + 16
        arr = (L.llama_token * cap)()
        n = L.llama_tokenize(self._vocab, data, len(data), arr, cap, False, False)
        if n < 0:
            cap = -n
            arr = (L.llama_token * cap)()
            n = L.llama_tokenize(self._vocab, data, len(data), arr, cap, False, False)
            if n < 0:
                raise BackendError("llama_tokenize failed", n)
        return np.ctypeslib.as_array(arr)[:n].astype(np.int32, copy=True)

    def detokenize(self, tokens) -> bytes:
        """Concatenated bytes of ``tokens`` (iterable of ints)."""
        tb = self.token_bytes
        return b"".join(tb[int(t)] for t in tokens)

    def close(self) -> None:
        if self._model is not None:
            llama().llama_model_free(self._model)
            self._model = None


class LlamaContext(_Closing):
    """One llama.cpp context whose sequences 0..n_seq-1 are lanes.

    Args:
        model: the loaded ``Model``.
        n_seq: number of sequences (lanes) it holds at once.
        n_ctx_seq: KV cells per sequence (tokens), rounded up to a multiple of 256 by llama.cpp.
        n_batch: most tokens per ``decode`` call.
        n_threads: CPU threads (logits do not depend on it).
        attention: flash attention and KV cache types (``Attention``; default the stream
            format's first, q8_0 K and V).

    Raises:
        BackendError: the context could not be created.
    """

    def __init__(self, model: Model, *, n_seq: int, n_ctx_seq: int, n_batch: int = 256,
                 n_threads: int | None = None, attention: Attention = DEFAULT_ATTENTION):
        L = llama()
        if not available(attention):
            raise BackendError(f"attention mode {attention.name} needs nacrith's attention kernel "
                               f"{attention.kernel}, which this llama.cpp build lacks; rebuild with ./install.sh")
        self.model = model
        self.n_seq = int(n_seq)
        self.n_batch = int(n_batch)
        self.n_vocab = model.n_vocab
        n_ctx_seq = (int(n_ctx_seq) + 255) // 256 * 256
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx_seq * self.n_seq
        cp.n_batch = self.n_batch
        cp.n_ubatch = self.n_batch
        cp.n_seq_max = self.n_seq
        threads = int(n_threads or default_threads())
        cp.n_threads = threads
        cp.n_threads_batch = threads
        self.attention = attention
        cp.flash_attn_type = attention.flash
        cp.type_k = GGML_TYPES[attention.k]
        cp.type_v = GGML_TYPES[attention.v]
        cp.kv_unified = False
        # a model without GPU layers computes on the CPU alone: no operation is offloaded to a GPU
        # the build may have (llama.cpp would move large batches there), so its streams decode on
        # a CPU build and a GPU build of the same llama.cpp alike (nacrith.backend.fingerprint)
        cp.op_offload = bool(model.n_gpu_layers)
        cp.embeddings = False
        cp.no_perf = True
        self._ctx = L.llama_init_from_model(model._model, cp)
        if not self._ctx:
            raise BackendError(f"llama.cpp could not create a context ({self.n_seq} lanes x {n_ctx_seq} tokens)")
        self.n_ctx_seq = int(L.llama_n_ctx_seq(self._ctx))
        self._mem = L.llama_get_memory(self._ctx)
        self._batch = L.llama_batch_init(self.n_batch, 0, 1)
        self._bt = np.ctypeslib.as_array(self._batch.token, shape=(self.n_batch,))
        self._bp = np.ctypeslib.as_array(self._batch.pos, shape=(self.n_batch,))
        self._bn = np.ctypeslib.as_array(self._batch.n_seq_id, shape=(self.n_batch,))
        self._bl = np.ctypeslib.as_array(self._batch.logits, shape=(self.n_batch,))
        self._bn[:] = 1

    def decode(self, tokens: np.ndarray, positions: np.ndarray, seqs: np.ndarray,
               outputs: np.ndarray | None = None) -> np.ndarray:
        """Evaluate tokens and return the logits of those flagged for output.

        Args:
            tokens, positions, seqs: int32 arrays of the same length n <= n_batch (token id,
                position in its sequence, sequence id).
            outputs: bool/int8 array (n,) of tokens whose logits are wanted (default: all).

        Returns:
            float32 array of shape (n_outputs, n_vocab), rows in batch order, a view of
            llama.cpp's buffer valid until the next call.

        Raises:
            BackendError: llama_decode returned non-zero (1: no KV slot, 2: aborted, <0: error).
        """
        L = llama()
        n = len(tokens)
        if not 0 < n <= self.n_batch:
            raise ValueError(f"batch of {n} tokens (max {self.n_batch})")
        self._bt[:n] = tokens
        self._bp[:n] = positions
        self._bl[:n] = 1 if outputs is None else outputs
        n_out = n if outputs is None else int(np.count_nonzero(outputs))
        seq_ptrs = self._batch.seq_id
        for i in range(n):
            seq_ptrs[i][0] = int(seqs[i])
        self._batch.n_tokens = n
        rc = L.llama_decode(self._ctx, self._batch)
        if rc != 0:
            raise BackendError(f"llama_decode failed with code {rc}", rc)
        if n_out == 0:
            return np.zeros((0, self.n_vocab), np.float32)
        ptr = L.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(ptr, shape=(n_out, self.n_vocab))

    def prefill(self, tokens: np.ndarray, n_batch: int | None = None, seq: int = 0, pos0: int = 0) -> np.ndarray:
        """Evaluate one sequence's ``tokens`` (int32, shape (n,)) at positions pos0.. in batches of
        ``n_batch`` (default: this context's) and return a float32 copy of the logits of every token,
        shape (n, n_vocab). Raises BackendError as ``decode``."""
        nb = n_batch or self.n_batch
        out = []
        for i in range(0, len(tokens), nb):
            j = min(len(tokens), i + nb)
            out.append(self.decode(tokens[i:j], np.arange(pos0 + i, pos0 + j, dtype=np.int32),
                                   np.full(j - i, seq, np.int32)).copy())
        return np.concatenate(out) if out else np.zeros((0, self.n_vocab), np.float32)

    def seq_rm(self, seq: int, p0: int, p1: int) -> None:
        """Remove positions [p0, p1) of ``seq`` from the KV cache (p1 < 0: to the end)."""
        if not llama().llama_memory_seq_rm(self._mem, seq, p0, p1):
            raise BackendError(f"llama_memory_seq_rm({seq}, {p0}, {p1}) failed")

    def seq_add(self, seq: int, p0: int, p1: int, delta: int) -> None:
        """Shift positions [p0, p1) of ``seq`` by ``delta`` (RoPE K-shift at the next decode)."""
        llama().llama_memory_seq_add(self._mem, seq, p0, p1, delta)

    def clear(self) -> None:
        """Empty the KV cache of every sequence."""
        llama().llama_memory_clear(self._mem, True)

    def close(self) -> None:
        L = llama()
        if getattr(self, "_batch", None) is not None:
            L.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            L.llama_free(self._ctx)
            self._ctx = None
