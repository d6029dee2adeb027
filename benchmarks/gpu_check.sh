#!/usr/bin/env bash
# Issue 10's GPU checks in one run, from the repository root of a CUDA machine with swe-rl importable:
#   bash benchmarks/gpu_check.sh [MODEL] [TASKS]   (defaults: smollm2-135m, bundled)
# 1. gpu: benchmarks/gpu.py, transformers (and vLLM when installed) generation next to the RL trainer's tokens/s
# 2. fsdp: the same trainer step under FSDP2 (nccl, bf16 parameters, activation checkpointing)
# 3. rl: `swe-rl tasks prepare` + one iteration of `swe-rl rl --config benchmarks/gpu_check_rl.yaml`
#    (the model samples and trains on the GPU; the sandboxes run on the host's CPUs)
# Logs and JSON go to $OUT (default runs/gpu_check); every step has a time limit (STEP_TIMEOUT,
# default 240 s) and a failing step does not stop the next one; STEPS picks steps (default: all four).
set -u
MODEL=${1:-smollm2-135m}
TASKS=${2:-bundled}
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}

step() {  # step NAME COMMAND...: run it under its limit, log it, print its exit status and the log's tail
  local name=$1 start rc
  shift
  [[ " ${STEPS:-gpu fsdp prepare rl} " == *" $name "* ]] || return 0
  start=$(date +%s)
  timeout "${STEP_TIMEOUT:-240}" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  echo "== $name: exit $rc after $(($(date +%s) - start)) s: $*"
  tail -n "${TAIL:-12}" "$OUT/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__)"
step gpu $PY benchmarks/gpu.py --model "$MODEL" --out "$OUT/gpu.json"
step fsdp $PY benchmarks/gpu.py --model "$MODEL" --trainer-only --fsdp --checkpointing --out "$OUT/gpu_fsdp.json"
step prepare $PY -m swe_rl.cli tasks prepare "$TASKS" --jobs 4
step rl $PY -m swe_rl.cli rl --config benchmarks/gpu_check_rl.yaml --set model="$MODEL" --set tasks="$TASKS" --set out="$OUT/rl"
[ -f "$OUT/rl/metrics.jsonl" ] && $PY benchmarks/rl_table.py "$OUT/rl"
