#!/usr/bin/env bash
# The one prepared check for a GPU machine (PyTorch 2.11 + CUDA 13, Python 3.12, no internet):
# builds the CUDA extension in place against the machine's own torch (never reinstalls torch),
# runs `pytest -m cuda`, then the op benchmarks, and writes a log and the figures to $OUT (or
# ./gpu_check_out). Packages missing there (yacs, json_tricks, pycocotools, faster-coco-eval)
# travel as py3.12 wheels in the ignored folder .whl/ (see README, "GPU check").
# Usage: bash tools/gpu_check.sh [all|quick|bench|attention|models]
#   attention: build, the window-attention CUDA tests (all kernel families) and its benchmark only.
#   models: build, then whole-network throughput (tools/bench/bench_models.py): every network,
#     train and inference, fp32/bf16, NCHW/channels-last, fused op vs reference attention (eager),
#     then torch.compile for a subset (compile time dominates on a 15-minute budget).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
log="$OUT/gpu_check.log"
exec > >(tee -a "$log") 2>&1

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
start=$(date +%s)
FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}" \
  "$PY" setup.py -q build_ext --inplace || { echo "BUILD FAILED"; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
"$PY" -c "import higherpose.ops as o; print('cuda kernels compiled:', o.cuda_compiled())"

mode="${1:-all}"  # all | quick (build + tests) | bench (build + benchmarks) | attention | models
# pytest-xdist (present on the GPU image) runs tests in worker processes, so one crashing test
# is reported as such instead of ending the whole run.
xdist=""; "$PY" -c "import xdist" 2>/dev/null && xdist="-n 4"
bench() {  # name, timeout, args...
  local name=$1 limit=$2; shift 2
  echo "== $name $*"
  timeout "$limit" "$PY" "tools/bench/$name.py" "$@" 2>&1 | tail -80
}
if [ "$mode" = "attention" ]; then
  timeout 200 "$PY" -m pytest -m cuda -q --no-header -p no:cacheprovider $xdist tests/test_window_attention_cuda.py \
    2>&1 | tail -40 | tee "$OUT/pytest_cuda.txt"
  # All kernel families in one run; should one of them fault the CUDA context, each family again
  # in its own process, so the others' figures survive.
  bench bench_window_attn 200 --device cuda --batch 32 --repeats 10 --json "$OUT/bench_window_attn.json" ||
    for family in rows tiles mma; do
      bench bench_window_attn 120 --device cuda --batch 32 --repeats 10 --kernels "$family" \
        --json "$OUT/bench_window_attn_$family.json"
    done
  echo "gpu check (attention) done in $(( $(date +%s) - start )) s"
  exit 0
fi
if [ "$mode" = "models" ]; then
  # Rows are printed (and the JSON rewritten) as they come, so a timeout keeps what was measured.
  bench bench_models 240 --device cuda --batch 8 --steps 6 --dtypes fp32,bf16 --channels-last off,on \
    --json "$OUT/bench_models_eager.json"
  bench bench_models 180 --device cuda --batch 8 --steps 6 --networks hrformer_s,higher_pose,hrnet_w32 \
    --compile on --json "$OUT/bench_models_compile.json"
  echo "gpu check (models) done in $(( $(date +%s) - start )) s"
  exit 0
fi
[ "$mode" = "bench" ] || timeout 240 "$PY" -m pytest -m cuda -q --no-header -p no:cacheprovider --continue-on-collection-errors $xdist \
  tests 2>&1 | tail -60 | tee "$OUT/pytest_cuda.txt"
[ "$mode" = "quick" ] && exit 0

bench bench_peaks 60 --device cuda --repeats 7 --json "$OUT/bench_peaks.json"
bench bench_group 60 --device cuda --repeats 5
bench bench_window_attn 200 --device cuda --batch 32 --repeats 10 --json "$OUT/bench_window_attn.json"
bench bench_valid 100 --device cuda --images 32 --repeats 3 --reference-images 2 --json "$OUT/bench_valid.json"
echo "gpu check done in $(( $(date +%s) - start )) s"
