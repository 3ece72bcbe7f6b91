#!/usr/bin/env bash
# Gowalla benchmark (LightGCN split): RecBole's LightGCN and BPR against the three quantized
# models at 1 bit (HQ-GNN also at 2 and 4 bits), all under one training budget that fits a
# 2-core CPU machine: EPOCHS epochs each (default 4), evaluated once at the end (the test
# metrics are those of the final model: with eval_step = epochs there is no model selection).
# Schedules that are defined in epochs are compressed into the budget and stated here:
#   HashGNN: beta_step=0.25, beta_period=1 (pure codes from epoch 4 instead of epoch 100);
#   L2QGCN-anl: warmup_epochs=2 (binarised from epoch 2 instead of 100).
# The models run as two comparisons in parallel, one torch thread each (one per core), and
# the two tables are merged into one report.
# Results: docs/results/gowalla.md. Usage (from the repository root, venv active):
#   bash benchmarks/gowalla_comparison.sh [EPOCHS] [OUT_DIR]
set -euo pipefail
EPOCHS=${1:-4}
OUT=${2:-results/gowalla-${EPOCHS}ep}
python -m recbole_quant.data import-lightgcn path/to/gowalla --name gowalla --out dataset
COMMON=(--dataset=gowalla --data_path=dataset --epochs="$EPOCHS" --eval_step="$EPOCHS" --show_progress=False)
OMP_NUM_THREADS=1 python run_recbole_quant.py \
  --model=LightGCN,BPR,HQGNN,HashGNN:beta_step=0.25:beta_period=1 "${COMMON[@]}" --out_dir="$OUT/part1" &
OMP_NUM_THREADS=1 python run_recbole_quant.py \
  --model=HQGNN:bits=2,HQGNN:bits=4,L2QGCN:variant=anl:warmup_epochs=2 "${COMMON[@]}" --out_dir="$OUT/part2" &
wait
python -m recbole_quant.report merge "$OUT" "$OUT/part1/table.csv" "$OUT/part2/table.csv" \
  --title "Gowalla (LightGCN split), $EPOCHS epochs per model"
