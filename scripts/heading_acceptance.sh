#!/bin/bash
# [fidelity] the int8 stages on a float model that has learned heading (PERFORMANCE.md "The int8 stages on the
# model that has learned heading"): the two-step heading recipe on synth40 (30 training scenes; its 10 val scenes,
# 600 images, never trained on), then calibration, QAT, int_infer, the board (host artifact, align-bpu) and the
# paired table of compare-stages, every stage scored on the same 600 val images.
#
#   scripts/heading_acceptance.sh WORK_DIR [--set key=value ...]
#   scripts/heading_acceptance.sh work_dirs/hrelu --set backbone_activation=relu --set calibration_observer=percentile
#   QAT_FROM=work_dirs/hrelu scripts/heading_acceptance.sh work_dirs/hrelu_lr2e-5 --set backbone_activation=relu \
#       --set calibration_observer=percentile --set qat_lr=2e-5
#
# QAT_FROM=DIR takes DIR's float and calibration checkpoints and runs only QAT and what follows (a QAT recipe
# compared on the same float model). A stage whose checkpoint is already there is not trained again, and one that
# stopped part way resumes from its last checkpoint. About 75 minutes on a quiet 2-core machine with THREADS=2
# (the default).
source "$(dirname "$0")/acceptance_common.sh"
export OMP_NUM_THREADS=${THREADS:-2}
if [ ! -f work_dirs/synth40_lmdb/.complete ]; then
  fcos3d data synth --out work_dirs/synth40 --version v1.0-synth --scenes 40 --samples-per-scene 10 --val-scenes 10
  for s in train val; do
    fcos3d data pack --src-data-dir work_dirs/synth40 --split-name $s --version v1.0-synth \
      --target-data-dir work_dirs/synth40_lmdb
  done
  touch work_dirs/synth40_lmdb/.complete
fi
stamp data
C=configs/fcos3d_efficientnetb0_synthetic.py
# The heading recipe (session 16): the YUV stem and the direction loss at weight 4.
H=(--set data_root=work_dirs/synth40_lmdb --set num_workers=1 --set yuv_stem=true --set dir_loss_weight=4)
S=("${H[@]}" --set "ckpt_dir=$WORK" "$@")
mkdir -p "$WORK"
if [ -n "${QAT_FROM:-}" ]; then
  for f in float-checkpoint-best float-checkpoint-last calibration-checkpoint-best; do
    [ -f "$WORK/$f.pth.tar" ] || cp "$QAT_FROM/$f.pth.tar" "$WORK/$f.pth.tar"
  done
else
  if [ ! -f "$WORK/pretrain/float-checkpoint-best.pth.tar" ]; then
    # Step 1: one epoch with the depth code weight 0.2 (HAT's pretrain stage).
    fcos3d train --stage float $(resume_flag "$WORK/pretrain" float) --config $C "${H[@]}" \
      --set "ckpt_dir=$WORK/pretrain" "$@" \
      --set float_epochs=1 --set val_interval=0 --set depth_code_weight=0.2 --set dir_loss_weight=1
    stamp pretrain
  fi
  if [ ! -f "$WORK/float-checkpoint-best.pth.tar" ]; then
    # Step 2: 8 epochs at the depth weight 1.0 from the pretrain run, validated once at the end.
    fcos3d train --stage float $(resume_flag "$WORK" float) --config $C "${S[@]}" --set float_epochs=8 --set val_interval=8 \
      --set "init_float=$WORK/pretrain/float-checkpoint-last.pth.tar"
    stamp "train float"
  fi
  if [ ! -f "$WORK/calibration-checkpoint-best.pth.tar" ]; then
    fcos3d train --stage calibration $(resume_flag "$WORK" calibration) --config $C "${S[@]}"
    stamp "train calibration"
  fi
fi
if [ ! -f "$WORK/qat-checkpoint-best.pth.tar" ]; then
  fcos3d train --stage qat $(resume_flag "$WORK" qat) --config $C "${S[@]}"
  stamp "train qat"
fi
score_all $C "${S[@]}"
