"""Fingerprint of the numeric backend, and the build check run by install.sh.

The logits llama.cpp computes depend on the library version, the SIMD code paths compiled in
(an AVX-512 build and an AVX2 build of the same version differ), the device the layers run on,
and the context settings nacrith fixes (flash attention, KV cache type, KV rotation). A stream
records this fingerprint; a decoder with a different one refuses to decode (``codec/FORMAT.md``).

``python -m nacrith.backend --check`` verifies the installed build has exactly the SIMD feature
set install.sh pins (catches a stale or ``-march=native`` wheel reused from pip's cache).
"""

from __future__ import annotations

import os
import sys

from .model import ATTN_ROT_VALUE, DEFAULT_ATTENTION, Attention, default_attention, llama

# CPU features of the pinned build (install.sh CMAKE_FLAGS): x86-64-v3 without AVX-512.
EXPECTED_CPU_FEATURES = {"SSE3": "1", "SSSE3": "1", "AVX": "1", "AVX2": "1", "F16C": "1", "FMA": "1",
                         "BMI2": "1"}
FORBIDDEN_CPU_FEATURES = ("AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AVX_VNNI", "AMX_INT8")


def system_info() -> str:
    """llama.cpp's ``llama_print_system_info()``, whitespace-normalised."""
    return " ".join(llama().llama_print_system_info().decode("utf-8", "replace").split())


def cpu_features(info: str | None = None) -> dict[str, str]:
    """Parse ``NAME = VALUE`` pairs of the system info string."""
    out = {}
    for part in (info or system_info()).replace("|", "\n").splitlines():
        if "=" in part:
            k, v = part.split("=", 1)
            k = k.strip().split(":")[-1].strip()
            out[k] = v.strip()
    return out


def backend_sections(info: str | None = None) -> list[tuple[str, dict[str, str]]]:
    """The system info string as (backend name, {feature: value}) per backend, in its order:
    ``CUDA : ARCHS = 900 | ... | CPU : SSE3 = 1 | ...`` (llama_print_system_info writes the
    backends one after the other, each ``NAME : `` then ``KEY = VALUE | `` pairs)."""
    out: list[tuple[str, dict[str, str]]] = []
    for token in (info or system_info()).split("|"):
        if ":" in token.split("=", 1)[0]:
            name, token = token.split(":", 1)
            out.append((name.strip(), {}))
        if "=" in token and out:
            k, v = token.split("=", 1)
            out[-1][1][k.strip()] = v.strip()
    return out


def fingerprint(n_gpu_layers: int | None = 0, attention: Attention = DEFAULT_ATTENTION, weights: str = "",
                gpu: bool | None = None) -> str:
    """The backend fingerprint string stored in stream headers (hashed).

    Contains: llama-cpp-python version, llama.cpp system info (compiled features), where layers
    run, and the fixed context settings. Thread count is not part of it (logits do not depend
    on it; ``tests/test_kernels_invariance.py``). ``$NACRITH_BACKEND_FINGERPRINT``, when set, replaces
    it: a way to see how a decoder or a worker with another backend is refused (tests).
    ``n_gpu_layers=None``: the build alone, without the device (format version 2 records the
    offload on its own, so that an error can name the setting). ``attention``: the context's
    flash attention and KV cache types (``nacrith.model.ATTENTION_MODES``). ``weights``: the
    model's ``Model.kernel_record`` ("" for models of Q4_1 and Q8_0 weights only). ``gpu``: the
    build as a stream coded with layers on a GPU sees it (every backend of the build, and the
    GPUs by name, ``gpu=...``), or False as one coded on the CPU sees it (the CPU backend's
    section only: a CPU stream decodes on a GPU build of the same llama.cpp and flags too, with no
    layer and no operation offloaded); None (format version 1): every section, no GPU names.
    """
    override = os.environ.get("NACRITH_BACKEND_FINGERPRINT")
    if override:
        return override
    L = llama()
    device = "cpu" if not n_gpu_layers else "gpu:all" if n_gpu_layers < 0 else f"gpu:{n_gpu_layers}"
    info = system_info()
    # "CPU : SSE3 = 1 | AVX = 1 | ..." -> "CPU SSE3 AVX ..."; other backends' lines kept as text
    parts = []
    for head, feats in backend_sections(info):
        if gpu is False and head != "CPU":
            continue  # a CPU stream: the other backends compute nothing of it
        on = [k for k, v in feats.items() if v not in ("0", "")]
        parts.append(f"{head} {' '.join(on)}".strip())
    if gpu:
        from .runtime import gpu_devices

        parts.append("gpu=" + ",".join(gpu_devices() or ["none"]))
    where = "" if n_gpu_layers is None else f"device={device}; "
    return (f"llama-cpp-python {L.__version__}; {'; '.join(parts)}; {where}"
            f"{attention.fingerprint()} rot={1 - int(ATTN_ROT_VALUE)}{weights}")


def fingerprint_id(fp: str) -> bytes:
    """BLAKE2b-64 of a fingerprint string (what streams store)."""
    from .format import backend_id

    return backend_id(fp)


def supports_gpu_offload() -> bool:
    """Whether this llama.cpp build has a GPU backend (``llama_supports_gpu_offload``)."""
    return bool(llama().llama_supports_gpu_offload())


def label(n_gpu_layers: int = 0) -> str:
    """Short description of the backend for messages (stored beside the fingerprint's hash)."""
    L = llama()
    device = "cpu" if n_gpu_layers == 0 else "gpu"
    feats = " ".join(k for k, v in cpu_features().items() if v == "1" and k.startswith("AVX"))
    return f"llama-cpp-python {L.__version__} {device} {feats}".strip()


def check_build() -> list[str]:
    """Problems with the installed llama.cpp build (empty list: it matches the pinned flags)."""
    feats = cpu_features()
    problems = [f"{k} = {feats.get(k)} (expected {v})" for k, v in EXPECTED_CPU_FEATURES.items()
                if feats.get(k) != v]
    problems += [f"{k} = 1 (must be off)" for k in FORBIDDEN_CPU_FEATURES if feats.get(k) == "1"]
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        problems = check_build()
        if problems:
            print("nacrith: llama-cpp-python was not built with nacrith's pinned flags: "
                  + "; ".join(problems) + ". Rebuild with ./install.sh.", file=sys.stderr)
            return 1
        # the fingerprint of the attention mode this build's encoders use by default (what a
        # stream written here records), not of DEFAULT_ATTENTION (the q8_0 reference mode)
        from .model import matmul_kernel

        mm = matmul_kernel()
        print(f"backend ok: {fingerprint(0, default_attention())}"
              + (f"; weight products: {mm} (Q4_1/Q8_0 tiles with llama.cpp's bits, other types "
                 "batch-invariant)" if mm else ""))
        return 0
    print(fingerprint(0, default_attention()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
