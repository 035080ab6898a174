"""Export the integer model as int8 QDQ ONNX (opset 17): fcos3d.int8.writer writes its op list, onnxsim tidies.

The graph has exactly the patterns of fcos3d/int8/reader.py (docs/int8.md section 5): int8 image input,
DQ -> Conv -> [Relu] -> Q, DQ -> Add -> Q, DQ -> Resize/MaxPool -> Q, head convs without Q.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import onnx

from fcos3d.errors import Fcos3dError
from fcos3d.int8.writer import OPSET, write_qdq
from fcos3d.io import atomic_write_bytes

from .intmodel import IntModel, QAT2Quantize

__all__ = ["OPSET", "INPUT_LAYOUT", "build_qdq_onnx", "export_qdq_onnx"]

INPUT_LAYOUT = "NCHW YUV444 int8 = byte - 128, scale 1/128"


def build_qdq_onnx(int_model: IntModel, input_shape, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """The QDQ ONNX of ``int_model`` for a fixed ``input_shape`` (N, 3, H, W); checked by onnx.checker."""
    return write_qdq(int_model.graph, tuple(input_shape), metadata)


def _qdq_counts(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def simplify_keeping_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxsim (shape inference, dead-code removal) keeping every Q/DQ: no constant folding (it would turn
    DQ(int8 weight) into float weights) and no common-subexpression elimination (it would merge the
    per-consumer DQs that QDQ consumers expect). Raises if the op counts still change."""
    import onnxsim

    simplified, ok = onnxsim.simplify(
        model, skip_constant_folding=True, skip_fuse_bn=True, skipped_optimizers=["eliminate_common_subexpression"]
    )
    if not ok:
        raise Fcos3dError("onnxsim could not validate the simplified QDQ graph; export with simplify=False")
    if _qdq_counts(simplified) != _qdq_counts(model):
        raise Fcos3dError(
            f"onnxsim changed the QDQ graph ({_qdq_counts(model)} -> {_qdq_counts(simplified)}); "
            "export with simplify=False"
        )
    del simplified.metadata_props[:]
    simplified.metadata_props.extend(model.metadata_props)
    onnx.checker.check_model(simplified)
    return simplified


def export_qdq_onnx(
    model, input_shape, path: str | Path, *, class_names=None, simplify: bool = True
) -> onnx.ModelProto:
    """Write the int8 QDQ ONNX of an IntModel (or a QAT QuantFCOS3D, converted first) to ``path``.

    metadata_props: ``class_names`` (JSON list), ``strides`` (JSON), ``output_scales`` (JSON {output:
    [per-channel float64]}: float = int32 * scale), ``input_layout``. Returns the saved ModelProto.
    """
    input_shape = tuple(int(v) for v in input_shape)
    if not isinstance(model, IntModel):
        model = QAT2Quantize(input_shape)(model)
    if class_names is None:
        from fcos3d.data.classes import CLASSES

        class_names = list(CLASSES)
    meta = {
        "class_names": json.dumps(list(class_names)),
        "strides": json.dumps(list(model.strides)),
        "output_scales": json.dumps({n: [float(v) for v in model.output_scales[n]] for n in model.output_names}),
        "input_layout": INPUT_LAYOUT,
        "input_scale": json.dumps(model.input_scale),
    }
    onnx_model = build_qdq_onnx(model, input_shape, meta)
    if simplify:
        onnx_model = simplify_keeping_qdq(onnx_model)
    # Whole or not at all (a temp file beside it, renamed): a kill or a full disk leaves the previous ONNX.
    atomic_write_bytes(path, onnx_model.SerializeToString())
    return onnx_model
