"""A tiny FCOS3D training config (as a dict) for trainer tests: small input, narrow head, no pretrained weights."""

from fcos3d.boxes.postprocess import PostProcess
from fcos3d.data.dataset import NuscenesMonoDataset
from fcos3d.data.transforms import Normalize, Pad, Resize3D, ToTensor
from fcos3d.model.bifpn import BiFPN
from fcos3d.model.efficientnet import EfficientNet
from fcos3d.model.fcos3d import FCOS3D
from fcos3d.model.head import FCOS3DHead
from fcos3d.trainer.optim import AdamW


def tiny_config(
    lmdb_root,
    ckpt_dir,
    *,
    batch_size=4,
    epochs=2,
    lr=2e-3,
    max_steps=None,
    checkpoint_interval=50,
    deterministic=True,
    val=False,
    size=(192, 128),
    optimizer=None,
    activation="relu",
):
    feat = 32
    transforms = [
        dict(type=Resize3D, img_scale=size),
        dict(type=Pad, size=size),
        dict(type=ToTensor, to_yuv=True),
        dict(type=Normalize, mean=128.0, std=128.0),
    ]
    cfg = dict(
        ckpt_dir=str(ckpt_dir),
        device="cpu",
        model=dict(
            type=FCOS3D,
            backbone=dict(type=EfficientNet, model_type="b0", use_se_block=False, activation=activation),
            neck=dict(type=BiFPN, out_channels=32, stack=1),
            head=dict(
                type=FCOS3DHead,
                in_channels=32,
                feat_channels=feat,
                cls_branch=(feat,),
                reg_branch=((feat,),) * 4 + ((),),
                dir_branch=(feat,),
                attr_branch=(feat,),
                centerness_branch=(16,),
                depth_bias_init=3.0,
                size_bias_init=(0.5, 1.2, 0.5),
            ),
        ),
        data_loader=dict(
            dataset=dict(type=NuscenesMonoDataset, data_path=f"{lmdb_root}/train_lmdb", transforms=transforms),
            batch_size=batch_size,
            num_workers=0,
        ),
        post_process=dict(type=PostProcess),
        float_trainer=dict(
            epochs=epochs,
            optimizer=optimizer or dict(type=AdamW, lr=lr, weight_decay=0.01),
            lr_schedule=dict(policy="constant", warmup_steps=5),
            grad_clip=35.0,
            val_interval=0,
            checkpoint_interval=checkpoint_interval,
            seed=0,
            deterministic=deterministic,
            max_steps=max_steps,
        ),
    )
    if val:
        cfg["val_data_loader"] = dict(
            dataset=dict(type=NuscenesMonoDataset, data_path=f"{lmdb_root}/val_lmdb", transforms=transforms),
            batch_size=8,
            num_workers=0,
        )
    return cfg
