#!/usr/bin/env bash
# Runs on the lent GPU machine, over the bundle of bench/gpu/bundle.sh (.device/), with no package
# registry (pip --no-index only). Two calls, each carrying one part of the bundle:
#   call A, carry .device/a:  bash bench/gpu/run.sh build   # nvidia-smi; llama-cpp-python + nacrith's
#                                                            # patches built with CUDA (sm from the GPU)
#   call B, carry .device/b:  bash bench/gpu/run.sh check   # the model assembled; bench/gpu/check.py
# Files stay between the two calls while the machine is warm (30 s). Results: $OUT.
# Rehearsal on a CPU machine: bench/gpu/rehearse.sh (the same steps with a CPU build).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/nacrith-gpu-out}
mkdir -p "$OUT"
STAGE=${NACRITH_GPU_STAGE:-/root/nacrith-gpu}
SITE=$STAGE/site
PY=${PYTHON:-python3}
LLAMA_VERSION=0.3.36
# install.sh's CPU flags (the CPU backend of this build computes CPU streams bit for bit as there)
CPU_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_BACKEND_DL=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
step() { echo "== $(date +%T) $*" | tee -a "$OUT/run.log" >&2; }

case "${1:-}" in
build)
  mkdir -p "$STAGE"
  if command -v nvidia-smi >/dev/null && [ "${NACRITH_GPU_CPU:-0}" != 1 ]; then
    nvidia-smi | tee "$OUT/nvidia-smi.txt"
    ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ')
    FLAGS="$CPU_FLAGS -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$ARCH"
    nvcc --version | tail -2 | tee -a "$OUT/run.log"
  else
    FLAGS="$CPU_FLAGS"  # the rehearsal: a CPU wheel in place of the CUDA one
  fi
  step "install the bundle's wheels"
  $PY -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .device/a/whl/*.whl
  step "unpack the patched llama-cpp-python source"
  rm -rf "$STAGE/src" && mkdir -p "$STAGE/src"
  tar xJf .device/a/llama_cpp_python-$LLAMA_VERSION-nacrith.tar.xz -C "$STAGE/src"
  step "build llama-cpp-python ($FLAGS)"
  t0=$(date +%s)
  CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) $PY -m pip wheel -q --no-index --no-deps \
    --no-build-isolation "$STAGE/src/llama_cpp_python-$LLAMA_VERSION" -w "$STAGE/wheel" 2>&1 | tail -20
  echo "build_seconds $(( $(date +%s) - t0 ))" | tee -a "$OUT/run.log"
  $PY -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$STAGE"/wheel/llama_cpp_python-*.whl
  cp .device/a/model.part0 "$STAGE/"
  PYTHONPATH="$SITE" $PY -c "import llama_cpp; print('gpu offload:', llama_cpp.llama_supports_gpu_offload())" \
    | tee -a "$OUT/run.log"
  step "build done"
  ;;
check)
  step "assemble the model"
  cat "$STAGE/model.part0" .device/b/model.part1 > "$STAGE/model.gguf"
  [ "$(sha256sum "$STAGE/model.gguf" | cut -d' ' -f1)" = "$(cat .device/b/model.sha256)" ] || { echo "model sha256 differs" >&2; exit 1; }
  step "check"
  PYTHONPATH="$SITE:$(pwd)" NACRITH_MODEL="$STAGE/model.gguf" NACRITH_CACHE="$STAGE/cache" PYTHONUNBUFFERED=1 \
    $PY bench/gpu/check.py --out "$OUT" --data .device/b --budget "${BUDGET:-300}" ${NACRITH_GPU_CPU:+--cpu} \
    2>&1 | tee "$OUT/check.log"
  step "check done"
  ;;
*)
  echo "usage: bash bench/gpu/run.sh build|check" >&2
  exit 2
  ;;
esac
