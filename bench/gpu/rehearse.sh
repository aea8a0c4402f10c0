#!/usr/bin/env bash
# Rehearse the device run on this CPU machine: a Python 3.12 virtual environment with the packages
# the GPU machine's image has (numpy, click, tqdm, jinja2, typing-extensions, scikit-build-core,
# cmake, ninja), then bench/gpu/run.sh build and check with a CPU wheel in place of the CUDA one,
# from the same bundle, with pip --no-index. Results: $OUT (default /tmp/nacrith-gpu-rehearsal).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY312=${PY312:-python3.12}
V=/tmp/nacrith-rehearsal-venv
[ -x $V/bin/python ] || $PY312 -m venv $V
$V/bin/python -m pip install -q "numpy>=2.0,<2.6" click tqdm jinja2 typing-extensions scikit-build-core cmake ninja
[ -d .device/a ] && [ -d .device/b ] || bash bench/gpu/bundle.sh
export OUT=${OUT:-/tmp/nacrith-gpu-rehearsal} PYTHON=$V/bin/python NACRITH_GPU_CPU=1 NACRITH_GPU_STAGE=/tmp/nacrith-gpu-stage
rm -rf "$NACRITH_GPU_STAGE" "$OUT"
time bash bench/gpu/run.sh build
time bash bench/gpu/run.sh check
echo "rehearsal results in $OUT" >&2
