"""The per-layer profile (fcos3d/compiler/profile.py) of a tiny host artifact: its structure, its files beside
perf.json, the attribution of the module's kernels to layers, and that the parts add up to the whole.

Timings are never compared with a speed; only sums of measured times with other measured times of the same run,
with wide bounds (a shared machine).
"""

from __future__ import annotations

import csv
import json

import onnx
import pytest
from qdq_graphs import QDQGraphBuilder

from fcos3d.artifact import read_meta, replaceable
from fcos3d.compiler.build import compile_onnx
from fcos3d.compiler.profile import CSV_COLUMNS, kernel_kind, profile_artifact


def tiny():
    """A dense conv, a depthwise conv whose add FuseOps folds into the depthwise kernel, a 1x1 conv, a max pool
    and an int32 head: 6 layers at 96x96, large enough that kernel time, not the VM's per-call cost, dominates."""
    b = QDQGraphBuilder(seed=3, name="profile_tiny")
    x = b.input((1, 3, 96, 96))
    x = b.conv(x, 32, kernel=3, stride=2, relu=True)
    d = b.conv(x, 32, kernel=3, groups=32, relu=True)
    x = b.add(x, d)
    x = b.conv(x, 64, kernel=1, relu=True)
    x = b.maxpool(x, kernel=2, stride=2, pad=0)
    b.conv(x, 4, kernel=3, int32_output=True)
    return b.build()


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    root = tmp_path_factory.mktemp("profile")
    onnx.save(tiny(), root / "tiny.onnx")
    compile_onnx(root / "tiny.onnx", "host", root / "art")
    return root / "art", profile_artifact(root / "art", runs=3, peak_gmacs_per_core=100.0)


def test_profile_files_sit_beside_perf_json_and_the_folder_stays_an_artifact(profiled):
    folder, p = profiled
    for name in ("perf.json", "profile.json", "profile.csv"):
        assert (folder / name).is_file()
    assert json.loads((folder / "profile.json").read_text())["totals"] == p["totals"]
    rows = list(csv.DictReader((folder / "profile.csv").open()))
    assert tuple(rows[0]) == CSV_COLUMNS and [r["name"] for r in rows] == [r["name"] for r in p["layers"]]
    read_meta(folder)
    replaceable(folder)  # a recompile may still replace the folder: the profile files are the compiler's own


def test_layers_are_the_estimators_layers_with_macs_and_roofline(profiled):
    folder, p = profiled
    perf = json.loads((folder / "perf.json").read_text())
    assert [r["name"] for r in p["layers"]] == [r["name"] for r in perf["layers"]]
    assert [r["macs"] for r in p["layers"]] == [r["macs"] for r in perf["layers"]]
    assert [r["op"] for r in p["layers"]] == ["Conv", "DepthwiseConv", "Add", "Conv", "MaxPool", "HeadConv"]
    for r in p["layers"]:
        assert r["measured_ms"] > 0 and r["kernels"]
        if r["macs"]:  # roofline = MACs / (100 GMAC/s x threads)
            assert r["roofline_ms"] == pytest.approx(r["macs"] / (100e9 * p["threads"]) * 1e3)
    kinds = [[k["kind"] for k in r["kernels"]] for r in p["layers"]]
    # the stride-1 depthwise conv pads each channel inside its own kernel (kernels.padded_input)
    assert kinds[0] == ["pad_split", "im2col", "conv2d_int8"] and kinds[1] == ["depthwise_int8"]
    assert p["totals"]["macs"] == sum(r["macs"] for r in p["layers"])


def test_module_kernels_are_attributed_in_order_and_the_fused_add_is_named(profiled):
    _, p = profiled
    kernels = [k for k in p["kernels"] if k["kind"] != "vm_builtin"]
    names = [r["name"] for r in p["layers"]]
    owners = [names.index(k["layer"]) for k in kernels]
    assert owners == sorted(owners)  # the module runs the layers in op order
    add = p["layers"][2]
    assert add["in_module_ms"] == 0.0 and add["fused_into"] == names[1]  # the add went into the depthwise kernel
    assert all(k["layer"] is None for k in p["kernels"] if k["kind"] == "vm_builtin")


def test_the_parts_add_up_to_the_measured_module(profiled):
    _, p = profiled
    t = p["totals"]
    in_module = sum(r["in_module_ms"] for r in p["layers"])
    assert in_module == pytest.approx(t["kernels_sum_ms"])
    # kernels + builtins, each timed by the instrument (a few microseconds of callback each), against the
    # uninstrumented module: the same work, so within a factor of 2 either way even on a busy machine
    assert 0.5 < (t["kernels_sum_ms"] + t["vm_builtins_ms"]) / t["module_ms"] < 2.0
    assert 0.3 < t["layers_alone_sum_ms"] / t["module_ms"] < 3.0
    assert sum(p["by_kind_ms"].values()) == pytest.approx(t["kernels_sum_ms"] + t["vm_builtins_ms"])


def test_kernel_kind_names():
    assert kernel_kind("fused_conv2d_int83_add5_requantize5_tir_clip5_cast5") == "conv2d_int8"
    assert kernel_kind("pad_split12") == "pad_split"
    assert kernel_kind("vm.builtin.alloc_tensor") == "vm_builtin"
    assert kernel_kind("fused_cast7_requantize7_add7") == "cast"
