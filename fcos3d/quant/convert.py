"""The convert pipeline, HAT's shape: ModelConvertPipeline(qat_mode, qconfig_params, converters=[...]).

Float2Calibration folds every BN and swaps in quantised modules with calibration observers; Float2QAT
switches to QAT observers and fake quant; QAT2Quantize (intmodel.py) makes the integer model. Loading a
stage's weights (LoadStageCheckpoint) is the trainer's: fcos3d/trainer/checkpoint.py.
"""

from __future__ import annotations

from torch import nn

from fcos3d.errors import Fcos3dError
from fcos3d.model.layers import Add, ConvBNAct, ResizeNearest, SeparableConv, SeparableConvBNAct

from .observers import QConfig
from .qat import QAdd, QConv2d, QMaxPool2d, QResizeNearest, QuantFCOS3D, QuantModule, _act_name, set_quant_state

__all__ = ["Float2Calibration", "Float2QAT", "ModelConvertPipeline", "QAT_MODES"]

QAT_MODES = ("fuse_bn",)


def _conv(conv: nn.Conv2d, bn, act, qconfig: QConfig, int32_output: bool = False) -> QConv2d:
    return QConv2d.from_float(
        conv, bn, act, qconfig.weight(conv.out_channels), None if int32_output else qconfig.activation("calibration")
    )


def _swap(module: nn.Module, qconfig: QConfig, prefix: str) -> None:
    """Replace, in place, every child of ``module`` by its quantised form (depth first)."""
    for name, child in list(module.named_children()):
        path = f"{prefix}{name}"
        if isinstance(child, ConvBNAct):
            new = _conv(child.conv, child.bn, _act_name(child.act), qconfig)
        elif isinstance(child, SeparableConvBNAct):
            child.dw = _conv(child.dw, None, None, qconfig)  # the depthwise output gets its own quantiser
            child.pw = _conv(child.pw.conv, child.pw.bn, _act_name(child.pw.act), qconfig)
            new = child
        elif isinstance(child, SeparableConv):  # a prediction layer: dw -> int8, pw -> int32 raw output
            child.dw = _conv(child.dw, None, None, qconfig)
            child.pw = _conv(child.pw, None, None, qconfig, int32_output=True)
            new = child
        elif isinstance(child, Add):
            new = QAdd(qconfig.activation("calibration"))
        elif isinstance(child, ResizeNearest):
            new = QResizeNearest()
        elif isinstance(child, nn.MaxPool2d):
            new = QMaxPool2d(child)
        elif isinstance(child, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)) or type(child).__name__ == "SqueezeExcite":
            raise Fcos3dError(
                f"{path} ({type(child).__name__}) has no int8 form: build the model without SE blocks "
                "and include_top=False (HAT's int8 settings)"
            )
        else:
            _swap(child, qconfig, f"{path}.")
            continue
        setattr(module, name, new)


def _name_modules(model: nn.Module) -> None:
    for name, m in model.named_modules():
        if isinstance(m, QuantModule):
            m.qname = name or "input"


class Float2Calibration:
    """Float FCOS3D -> QuantFCOS3D: BN folded, observers on (in training mode), fake quant off."""

    uses_qconfig = True

    def __call__(self, model: nn.Module, qconfig: QConfig | None = None) -> QuantFCOS3D:
        if isinstance(model, QuantFCOS3D):
            raise Fcos3dError("Float2Calibration got an already converted model: put it first in the converters")
        qconfig = qconfig or QConfig()
        model.eval()  # folding reads the BN running statistics
        _swap(model, qconfig, "")
        q = QuantFCOS3D(model)
        _name_modules(q)
        return set_quant_state(q, observe=True, fake_quant=False)


class Float2QAT:
    """Calibrated (or float) model -> QAT: the QAT activation observers (keeping the calibrated ranges), fake quant on."""

    uses_qconfig = True

    def __call__(self, model: nn.Module, qconfig: QConfig | None = None) -> QuantFCOS3D:
        qconfig = qconfig or QConfig()
        if not isinstance(model, QuantFCOS3D):
            model = Float2Calibration()(model, qconfig)
        for m in model.modules():
            if isinstance(m, (QConv2d, QAdd)) and m.act_observer is not None:
                new = qconfig.activation("qat")
                state = {k: v for k, v in m.act_observer.state_dict().items() if k in new.state_dict()}
                new.load_state_dict(state, strict=False)
                m.act_observer = new
        return set_quant_state(model, observe=True, fake_quant=True)


class ModelConvertPipeline:
    """Apply ``converters`` in order; those marked ``uses_qconfig`` get the QConfig of ``qconfig_params``.

    ``qat_mode="fuse_bn"``: BN is folded into the convs before calibration and stays folded in QAT.
    """

    def __init__(self, qat_mode: str = "fuse_bn", qconfig_params: dict | None = None, converters=()):
        if qat_mode not in QAT_MODES:
            raise Fcos3dError(f"qat_mode={qat_mode!r} is not supported: use one of {QAT_MODES}")
        self.qat_mode = qat_mode
        self.qconfig = QConfig(**(qconfig_params or {}))
        self.converters = list(converters)

    def __call__(self, model: nn.Module) -> nn.Module:
        for convert in self.converters:
            model = convert(model, self.qconfig) if getattr(convert, "uses_qconfig", False) else convert(model)
        return model
