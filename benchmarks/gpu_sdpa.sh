#!/usr/bin/env bash
# Second device check: which SDPA backend serves the paper student's relative-position-bias
# attention fastest (cuDNN vs memory-efficient), MD vs supervised step, compiled, bf16, batch 256.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 240 python3 benchmarks/md_step.py --device cuda --batch 256 --steps 10 --warmup 3 --compile \
  --sdpa cudnn,efficient --json "$OUT/md_step_sdpa.json" 2>&1 | grep -v " INFO \|Warning\|warn" | tail -8
