#!/usr/bin/env bash
# Prepare, on this machine, everything the lent GPU machine needs (it reaches no package registry;
# its Python is 3.12 with numpy, click, tqdm, jinja2, typing-extensions, scikit-build-core, cmake,
# ninja and nvcc already there): .device/ (ignored by git), sent in two calls of < 64 MiB each.
#
#   call A (.device/a): llama-cpp-python 0.3.36's source with nacrith's patches applied, trimmed of
#     what the build does not read (its docs, test vocabularies, tools), as .tar.xz; nacrith as a
#     cp312 wheel (its native core compiled here for Python 3.12); the cp312 wheels of the Python
#     packages that machine lacks (zstandard, diskcache); the first part of the default model.
#   call B (.device/b): the rest of the default model; a stream made here on this CPU build and its
#     original (the cross-machine check).
#
# Then bench/gpu/run.sh runs there (README "GPU"). Prints what each part weighs.
#   bash bench/gpu/bundle.sh            # needs ./install.sh done (the venv, the model, the cache)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
D=.device
LLAMA_VERSION=0.3.36
PY312=${PY312:-python3.12}
VPY=.venv/bin/python
rm -rf "$D"
mkdir -p "$D/a/whl" "$D/b"
grep -qx "/$D/" .git/info/exclude 2>/dev/null || echo "/$D/" >> .git/info/exclude
t0=$(date +%s)

# 1. the patched llama-cpp-python source (built there with CUDA on 16 cores, and once without)
TMP=$(mktemp -d)
$VPY -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_VERSION" -d "$TMP"
tar xzf "$TMP/llama_cpp_python-$LLAMA_VERSION.tar.gz" -C "$TMP"
SRC="$TMP/llama_cpp_python-$LLAMA_VERSION"
for P in native/llama/nacrith-fa.patch native/llama/nacrith-mm.patch; do patch -s -p1 -d "$SRC" < "$P"; done
rm -rf "$SRC/vendor/llama.cpp/"{docs,models,benches,tests,tools,media,examples,gguf-py,scripts,grammars,prompts}
# the sdist carries a git pack of llama.cpp (38 MB) and every ggml backend; the build reads the CPU
# and CUDA ones only (ggml_add_backend adds a backend's folder only when its GGML_<NAME> is on)
rm -rf "$SRC/.git" "$SRC/vendor/llama.cpp/.git"
for B in opencl vulkan sycl hexagon metal et webgpu openvino cann virtgpu zdnn zendnn musa hip rpc; do
  rm -rf "$SRC/vendor/llama.cpp/ggml/src/ggml-$B"
done
mkdir -p "$SRC/vendor/llama.cpp/tools" "$SRC/vendor/llama.cpp/examples" "$SRC/vendor/llama.cpp/tests"
printf '' > "$SRC/vendor/llama.cpp/tools/CMakeLists.txt"
printf '' > "$SRC/vendor/llama.cpp/examples/CMakeLists.txt"
printf '' > "$SRC/vendor/llama.cpp/tests/CMakeLists.txt"
tar cJf "$D/a/llama_cpp_python-$LLAMA_VERSION-nacrith.tar.xz" -C "$TMP" "llama_cpp_python-$LLAMA_VERSION"
rm -rf "$TMP"

# 2. nacrith for CPython 3.12 (its C core compiled here), and what that machine lacks
$PY312 -m pip wheel -q --no-deps --no-build-isolation . -w "$D/a/whl" 2>/dev/null \
  || $PY312 -m pip wheel -q --no-deps . -w "$D/a/whl"
$VPY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$D/a/whl" "zstandard>=0.23" "diskcache>=5.6.1"

# 3. the default model, in two parts (98 MB: more than one call carries)
MODEL=$($VPY -c 'from nacrith.model import resolve_model_path; print(resolve_model_path(None))')
sha256sum "$MODEL" | cut -d' ' -f1 > "$D/b/model.sha256"
split -b 52428800 -d -a 1 "$MODEL" "$D/part"
mv "$D/part0" "$D/a/model.part0"
mv "$D/part1" "$D/b/model.part1"

# 4. the inputs (the corpora do not travel) and the cross-machine check: a stream made here (this
#    CPU build), decoded there by its CPU backend
CORPORA=$($VPY -c 'from bench.common import find_corpora; print(find_corpora())')
cp "$CORPORA/canterbury/alice29.txt" "$D/b/alice29.txt"
head -c 1000000 "$CORPORA/enwik/enwik6" > "$D/b/enwik_1mb"
head -c 8000 "$D/b/alice29.txt" > "$D/b/alice8k.txt"
.venv/bin/nacrith -q -f --threads 2 "$D/b/alice8k.txt" -o "$D/b/alice8k.txt.cpu.nc"

echo "bundle built in $(( $(date +%s) - t0 )) s:" >&2
du -sh "$D/a" "$D/b" "$D/a/"* "$D/a/whl/"* "$D/b/"* | sed 's/^/  /' >&2
# a call carries the working tree too (tracked and untracked files git does not ignore)
TREE=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
for part in a b; do
  n=$(( ($(du -sb "$D/$part" | cut -f1) + TREE) / 1048576 ))
  echo "  call $part carries $n MiB (with the working tree)" >&2
  if [ "$n" -ge 64 ]; then echo "bundle part $part: $n MiB with the working tree, over the 64 MiB a call carries" >&2; exit 1; fi
done
