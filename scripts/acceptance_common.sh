# Sourced by scripts/acceptance_full_budget.sh and scripts/heading_acceptance.sh (with their arguments): strict
# mode, the repository root, WORK (the first argument, shifted off), the venv's tools on PATH, and stamp.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: $0 WORK_DIR [--set key=value ...]" >&2
  exit 2
fi
WORK=$1
shift
export PATH="$PWD/.venv/bin:$PATH"
t0=$(date +%s)
stamp() { echo "=== $1 at $(($(date +%s) - t0)) s ($(date +%H:%M:%S))"; }
# resume_flag DIR STAGE: --resume when a run of STAGE in DIR stopped part way (its last checkpoint is there).
resume_flag() { if [ -f "$1/$2-checkpoint-last.pth.tar" ]; then echo --resume; fi; }

# score_all CONFIG ARGS...: every stage predicted with ARGS (its checkpoints in $WORK), the board (the host artifact,
# align-bpu over the same images) and compare-stages' paired table.
score_all() {
  local config=$1
  shift
  for st in float calibration qat int_infer; do
    fcos3d predict --stage $st --config "$config" "$@"
    stamp "predict $st"
  done
  fcos3d export --config "$config" "$@"
  fcos3d-validate --align-bpu --config "$config" "$@" --no-trace
  stamp align-bpu
  fcos3d compare-stages --config "$config" "$@" --board-results "$WORK/align_bpu/results_nusc.json"
  stamp done
}
