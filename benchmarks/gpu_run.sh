#!/usr/bin/env bash
# The device check, as one prepared script: wheels the device image lacks, the MD-step benchmark
# (paper student, timm SDPA vs FlexAttention, compiled, bf16, batch 256), the plain-ViT student,
# and a CUDA smoke run of `maskdistill pretrain`. Results land in $OUT.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)"
timeout 120 python3 -m maskdistill.cli pretrain demo train.device=cuda teacher.spec=pixels train.max_steps=30 \
  train.batch_size=128 data.num_workers=4 student.attention=flex --out /tmp/smoke 2>&1 | tail -4
python3 - <<'PY' 2>&1 | tail -3
import csv; rows = list(csv.DictReader(open('/tmp/smoke/metrics.csv'))); print('smoke: steps', len(rows), 'first loss', rows[0]['loss'], 'last loss', rows[-1]['loss'])
PY
timeout 330 python3 benchmarks/md_step.py --device cuda --batch 256 --steps 15 --warmup 4 --compile --attention timm,flex \
  --json "$OUT/md_step_paper.json" 2>&1 | grep -v " INFO " | tail -8
timeout 150 python3 benchmarks/md_step.py --device cuda --batch 256 --steps 15 --warmup 4 --compile --attention timm \
  --set student.arch=vit_base_patch16_224 student.rel_pos_bias=none student.abs_pos_emb=true \
  --json "$OUT/md_step_plain.json" 2>&1 | grep -v " INFO " | tail -5
