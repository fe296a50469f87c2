#!/usr/bin/env bash
# One short GPU check (issue 20): the GPU-marked tests, the inference/training throughput
# benchmark (fp32 and bf16, MFU), FAISS GPU vs CPU on 1M x 384, a GPU MiniLM pass and one Ray
# Train run with --use-gpu; all figures in one JSON file (OUT_DIR/gpu_check.json).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # default OUT_DIR: $OUT, else benchmarks/out/gpu
#
# Installs the CUDA torch build and .[gpu,text,dev] first, unless EJC_GPU_NO_INSTALL=1 (use the
# machine's own torch and packages: an offline machine; sections whose packages are missing are
# reported as skipped with the reason). TORCH_INDEX_URL picks the CUDA build (default cu128).
# GPU_CHECK_QUICK=1 times fewer throughput points. Budget: under 10 minutes on one H100/H200.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-benchmarks/out/gpu}}
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

if [ "${EJC_GPU_NO_INSTALL:-0}" != 1 ]; then
  "$PY" -m pip install -q torch --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cu128}" \
    && "$PY" -m pip install -q -e '.[gpu,text,dev]' || { echo "gpu_check: install failed" >&2; exit 1; }
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/nvidia-smi.csv" || { echo "gpu_check: nvidia-smi failed: no GPU?" >&2; exit 1; }
"$PY" -c 'import torch; assert torch.cuda.is_available(), "torch sees no CUDA device"; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())' || exit 1

t0=$(date +%s)
timeout 300 "$PY" -m pytest -m gpu tests/test_gpu.py -q -rs -p no:cacheprovider -o addopts="" --junitxml "$OUT_DIR/gpu_tests.xml" 2>&1 | tee "$OUT_DIR/gpu_tests.log"
tests_rc=${PIPESTATUS[0]}
echo "gpu_check: GPU tests exit $tests_rc ($(( $(date +%s) - t0 )) s)"

quick=()
[ "${GPU_CHECK_QUICK:-0}" = 1 ] && quick=(--quick)
timeout 420 "$PY" benchmarks/gpu_check.py --out "$OUT_DIR/gpu_check.json" --tests-xml "$OUT_DIR/gpu_tests.xml" "${quick[@]}" 2>&1 | tee "$OUT_DIR/gpu_check.log"
check_rc=${PIPESTATUS[0]}
echo "gpu_check: figures in $OUT_DIR/gpu_check.json (exit $check_rc; $(( $(date +%s) - t0 )) s in all)"
[ "$tests_rc" -eq 0 ] && [ "$check_rc" -eq 0 ]
