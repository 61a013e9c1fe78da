#!/bin/bash
# The CUDA path on a GPU host (onnxruntime-gpu with its CUDA libraries, docs/deploy.md 1b):
# its tests, then the figures of docs/performance.md "On a GPU", CPU and CUDA side by side.
#   bash scripts/gpu_check.sh            # PYTHON=/opt/camwatch/venv/bin/python to pick one
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
"$PY" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
"$PY" -m pytest -p no:cacheprovider tests/test_embedder_cuda.py -v -rs
for dev in cuda cpu; do "$PY" benchmarks/bench_embed.py --device $dev --shapes; done
"$PY" benchmarks/bench_embed.py --device cuda --threads 1,8 --batches 1,32,64 --repeats 3 --seconds 0.5
for dev in cpu cuda cpu cuda; do
  "$PY" benchmarks/bench_daemon.py --cameras 64 256 --interval 1 --seconds 8 --runs 1 --device $dev 2>&1 | grep -v WARNING
done
