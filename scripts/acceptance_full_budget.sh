#!/bin/bash
# [fidelity] acceptance rows at the synthetic config's full CPU budget (7 float epochs, 10 calibration batches,
# 2 QAT epochs), every stage and the board scored on the 10-scene val split (PERFORMANCE.md "Acceptance at the
# config's full CPU budget"). Training validates on mini_val (a second LMDB: the same 8 train scenes, the first
# 2 val scenes), so that the best-epoch choice never sees the split the table is measured on.
#
#   scripts/acceptance_full_budget.sh WORK_DIR [--set key=value ...]
#   scripts/acceptance_full_budget.sh work_dirs/acc7
#   scripts/acceptance_full_budget.sh work_dirs/acc7_relu --set backbone_activation=relu --set calibration_observer=percentile
#
# About 27 minutes on a quiet 2-core machine. Data are written once under work_dirs/{bigval,small}{,_lmdb}.
source "$(dirname "$0")/acceptance_common.sh"
if [ ! -f work_dirs/bigval_lmdb/.complete ] || [ ! -f work_dirs/small_lmdb/.complete ]; then
  fcos3d data synth --out work_dirs/bigval --version v1.0-synth --scenes 10 --samples-per-scene 10 --val-scenes 10
  fcos3d data synth --out work_dirs/small --version v1.0-synth --scenes 10 --samples-per-scene 10
  for s in train val; do
    fcos3d data pack --src-data-dir work_dirs/bigval --split-name $s --version v1.0-synth --target-data-dir work_dirs/bigval_lmdb
    fcos3d data pack --src-data-dir work_dirs/small --split-name $s --version v1.0-synth --target-data-dir work_dirs/small_lmdb
  done
  touch work_dirs/bigval_lmdb/.complete work_dirs/small_lmdb/.complete
fi
stamp data
C=configs/fcos3d_efficientnetb0_synthetic.py
T=(--set data_root=work_dirs/small_lmdb --set "ckpt_dir=$WORK" --set num_workers=1 "$@")
S=(--set data_root=work_dirs/bigval_lmdb --set "ckpt_dir=$WORK" --set num_workers=1 "$@")
for st in float calibration qat; do
  fcos3d train --stage $st --config $C "${T[@]}"
  stamp "train $st"
done
score_all $C "${S[@]}"
