"""Every layer's output as a graph output: the debug form of an IntGraph, for layer-by-layer comparisons.

A compiled module (or a TOSA flatbuffer) normally returns only the graph outputs, so a mismatch with the
simulator says which output differs, not which layer made it differ. ``with_layer_outputs`` adds one graph
output per op (after the graph's own outputs, in op order) so that every backend built from the result returns
every layer's integers; the per-op integers are the same as without it (each op's output is still computed by
that op alone), only cross-op fusions that would hide an intermediate tensor are given up.

A layer is an op of ``IntGraph.ops``: its name is the ONNX node name the reader gave the op, its tensor the op's
output (int8, or the int32 accumulator of a head conv).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .ops import GraphOutput, IntGraph

__all__ = ["LAYER_OUTPUT_PREFIX", "Layer", "graph_layers", "with_layer_outputs"]

# Name of the graph output that exposes layer X (unless X's tensor already is a graph output).
LAYER_OUTPUT_PREFIX = "layer:"


@dataclass(frozen=True)
class Layer:
    """One op of an IntGraph as the tracer sees it: position, names, dtype and dequantisation.

    ``float = (int - zero_point) * scales`` along axis 1 (``scales``: one element for int8 tensors, per channel
    for int32 accumulators)."""

    index: int
    name: str
    kind: str
    tensor: str
    dtype: str
    scales: np.ndarray
    zero_point: int
    inputs: tuple[str, ...]


def _layer(graph: IntGraph, index: int, op) -> Layer:
    kind = type(op).__name__
    if op.output in graph.tensor_scales:
        scales = np.array([graph.tensor_scales[op.output]], dtype=np.float64)
        return Layer(index, op.name, kind, op.output, "int8", scales, graph.zero_point(op.output), tuple(op.inputs))
    acc = getattr(op, "accumulator_scale", None)
    if acc is None:
        raise ValueError(f"layer {op.name!r} ({kind}): its output {op.output!r} is neither int8 nor an accumulator")
    return Layer(index, op.name, kind, op.output, "int32", np.asarray(acc, dtype=np.float64), 0, tuple(op.inputs))


def graph_layers(graph: IntGraph) -> list[Layer]:
    """The graph's ops as ``Layer`` rows, in execution order."""
    return [_layer(graph, k, op) for k, op in enumerate(graph.ops)]


def with_layer_outputs(graph: IntGraph) -> tuple[IntGraph, dict[str, str]]:
    """``(graph with every layer's output as a graph output, {op name: graph output name})``.

    The graph's own outputs stay first and keep their names (an op whose tensor is one of them maps to it);
    every other op adds the output ``layer:<op name>``, in op order. Op names are unique in a graph read from
    ONNX (node names); a repeated one is an error rather than a silent overwrite.
    """
    by_tensor = {o.tensor: o.name for o in graph.outputs}
    taken = {o.name for o in graph.outputs}
    outputs = list(graph.outputs)
    mapping: dict[str, str] = {}
    for layer in graph_layers(graph):
        if layer.name in mapping:
            raise ValueError(f"two layers are named {layer.name!r}: layer outputs need unique op names")
        if layer.tensor in by_tensor:
            mapping[layer.name] = by_tensor[layer.tensor]
            continue
        name = LAYER_OUTPUT_PREFIX + layer.name
        if name in taken:
            raise ValueError(f"graph output {name!r} exists already: cannot expose layer {layer.name!r} under it")
        taken.add(name)
        by_tensor[layer.tensor] = name
        mapping[layer.name] = name
        outputs.append(GraphOutput(name, layer.tensor, layer.dtype, layer.scales, layer.zero_point, layer.dtype))
    return replace(graph, outputs=tuple(outputs)), mapping
