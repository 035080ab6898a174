#!/bin/bash
# [fidelity] the int8 gaps measured on a held-out test split that no choice was made on: a fresh synthetic
# dataset (seed 1, 30 val scenes, 1800 images) whose scenes are drawn independently of synth40's. Training,
# the QAT epoch (the best on synth40's 10 val scenes) and every recipe decision were taken on synth40; this
# script only scores the finished checkpoints of FROM on the new images: every stage predicted, the board
# (host artifact, align-bpu over all 1800 images) and compare-stages' paired table.
#
#   scripts/heldout_acceptance.sh WORK_DIR FROM_DIR [--set key=value ...]
#   scripts/heldout_acceptance.sh work_dirs/hr6_test work_dirs/hr6
#   scripts/heldout_acceptance.sh work_dirs/hr6_qatlast_test work_dirs/hr6_qatlast
#
# FROM_DIR's float, calibration and QAT checkpoints are copied into WORK_DIR (FROM_DIR's own predictions are
# left as they are). About 25 minutes on a quiet 2-core machine with THREADS=2, once the data is there; NO_BOARD=1
# scores the four stages only (no export, no align-bpu: about 15 minutes).
source "$(dirname "$0")/acceptance_common.sh"
FROM=$1
shift
export OMP_NUM_THREADS=${THREADS:-2}
TEST=work_dirs/synth_test30
if [ ! -f ${TEST}_lmdb/.complete ]; then
  # --scenes 1: the train split is not used here; the 30 val scenes are what this split is for.
  fcos3d data synth --out $TEST --version v1.0-synth --seed 1 --scenes 1 --samples-per-scene 10 --val-scenes 30
  fcos3d data pack --src-data-dir $TEST --split-name val --version v1.0-synth --target-data-dir ${TEST}_lmdb
  touch ${TEST}_lmdb/.complete
fi
stamp data
C=configs/fcos3d_efficientnetb0_synthetic.py
S=(--set data_root=${TEST}_lmdb --set num_workers=1 --set yuv_stem=true --set dir_loss_weight=4
  --set "ckpt_dir=$WORK" "$@")
mkdir -p "$WORK"
for f in float calibration qat; do
  [ -f "$WORK/$f-checkpoint-best.pth.tar" ] || cp "$FROM/$f-checkpoint-best.pth.tar" "$WORK/$f-checkpoint-best.pth.tar"
done
if [ -n "${NO_BOARD:-}" ]; then
  for st in float calibration qat int_infer; do
    fcos3d predict --stage $st --config $C "${S[@]}"
    stamp "predict $st"
  done
  fcos3d compare-stages --config $C "${S[@]}"
  stamp done
else
  score_all $C "${S[@]}"
fi
