"""The latency model (estimate.py) pinned on hand-computed layers, its reports, and the host fit (latency/fit.py).

The arithmetic of every pinned number is in the comments (PERFORMANCE.md "Latency model" has the formulas).
U55_PINNED: ethos-u55-256's geometry and bandwidths, 256 MAC/cycle, block (h, w, oc, ic) = (2, 2, 8, 8), 500 MHz,
SRAM 2 MiB at 4 GB/s (8 bytes a cycle), off-chip 0.5 GB/s (1 byte a cycle), 64 cycles of overhead a layer, no
per-kind figures: a fixed profile, so that refitting the packaged board file to Vela (scripts/fit_npu_boards.py)
does not move these hand-computed numbers.
"""

from __future__ import annotations

import csv
import json
from types import MappingProxyType

import numpy as np
import pytest
from qdq_graphs import QDQGraphBuilder

from fcos3d.boards import OPTIONAL_FIGURES, Accelerator, Figure, UnknownBoardError, board_names, load_board
from fcos3d.compiler.latency.estimate import LayerEstimate, estimate
from fcos3d.compiler.latency.fit import calibrated_board, fit_host
from fcos3d.compiler.latency.report import CSV_COLUMNS, perf_dict, write_report
from fcos3d.int8.reader import parse_qdq

U55 = "ethos-u55-256"


def _pinned_u55():
    from dataclasses import replace

    from fcos3d.boards import OPTIONAL_FIGURES

    board = load_board(U55)
    figures = {k: f for k, f in board.accelerator.figures.items() if k not in OPTIONAL_FIGURES}
    for name, value in {"op_overhead_cycles": 64, "sram_bytes": 2 * 2**20, "elementwise_per_cycle": 8}.items():
        figures[name] = Figure(name, value, figures[name].unit, "test: the hand-computed numbers' figure")
    acc = Accelerator(board.accelerator.name, MappingProxyType(figures))
    return replace(board, accelerator=acc)


U55_PINNED = _pinned_u55()


def one_conv(c_in, c_out, hw, kernel=3, groups=1, stride=1):
    b = QDQGraphBuilder(seed=0)
    x = b.input((1, c_in, *hw))
    b.output(b.conv(x, c_out, kernel=kernel, stride=stride, groups=groups, relu=True))
    return parse_qdq(b.build())


def test_conv_3x3_16_to_32_at_64x64_on_u55():
    (layer,) = estimate(one_conv(16, 32, (64, 64)), U55_PINNED).layers
    # work = 64*64 positions (2x2 blocks: no padding) * 32 oc (8 | 32) * 16 ic (8 | 16) * 9 taps = 18,874,368
    # compute = 18,874,368 / 256 = 73,728 cycles
    assert (layer.macs, layer.work, layer.compute_cycles) == (18_874_368, 18_874_368, 73_728)
    # weights: 32*16*9 = 4,608 int8 + 32 channels * 9 bytes (bias 4 + multiplier 4 + shift 1) = 4,896 bytes
    # off chip at 1 byte/cycle: 4,896 cycles
    # activations: in 16*64*64 = 65,536 + out 32*64*64 = 131,072 = 196,608 bytes <= 2 MiB: on chip, / 8 = 24,576
    assert (layer.weight_bytes, layer.activation_bytes, layer.on_chip) == (4_896, 196_608, True)
    assert layer.memory_cycles == max(4_896, 24_576)
    # cycles = max(73,728, 24,576) + 64 = 73,792
    assert (layer.cycles, layer.bound) == (73_792, "compute")


def test_depthwise_uses_one_input_lane_of_eight():
    (layer,) = estimate(one_conv(32, 32, (64, 64), groups=32), U55_PINNED).layers
    assert layer.op == "DepthwiseConv"
    # real MACs = 4,096 positions * 32 channels * 9 taps = 1,179,648
    # work = 4,096 * ceil(32/8)*8 = 32 oc * block_ic 8 (one useful lane) * 9 = 9,437,184 (8x the MACs)
    # compute = 9,437,184 / 256 = 36,864 cycles
    assert (layer.macs, layer.work, layer.compute_cycles) == (1_179_648, 9_437_184, 36_864)
    # weights 32*1*9 = 288 + 32*9 = 288 -> 576 bytes (576 cycles); activations 2 * 131,072 = 262,144 / 8 = 32,768
    assert (layer.weight_bytes, layer.memory_cycles) == (576, 32_768)
    assert layer.cycles == 36_864 + 64


@pytest.mark.parametrize("padded_from", [17, 20, 23])
def test_output_channels_padded_to_the_block_cost_as_much_as_the_padded_layer(padded_from):
    # 16 -> 17..23 channels fill three blocks of 8 like 16 -> 24: work = 4,096 * 24 * 16 * 9 = 14,155,776,
    # compute = 55,296 cycles; memory stays below it (at most (65,536 + 98,304) / 8 = 20,480), so
    # cycles = 55,296 + 64 = 55,360 for all of them; 16 -> 16 needs two blocks: 36,864 + 64.
    (odd,) = estimate(one_conv(16, padded_from, (64, 64)), U55_PINNED).layers
    (full,) = estimate(one_conv(16, 24, (64, 64)), U55_PINNED).layers
    (fewer,) = estimate(one_conv(16, 16, (64, 64)), U55_PINNED).layers
    assert odd.compute_cycles == full.compute_cycles == 55_296
    assert odd.cycles == full.cycles == 55_360
    assert fewer.cycles == 36_864 + 64
    assert odd.macs < full.macs


def test_input_channels_are_padded_too():
    # 9 input channels take two 8-deep steps, as 16 do: work = 4,096 * 32 * 16 * 9 = 18,874,368 -> 73,728 cycles
    (layer,) = estimate(one_conv(9, 32, (64, 64)), U55_PINNED).layers
    assert layer.compute_cycles == 73_728


def test_a_layer_whose_activations_exceed_sram_becomes_memory_bound():
    # 1x1 conv 64 -> 64 at 128x192: in 64*24,576 = 1,572,864 + out 1,572,864 = 3,145,728 bytes > 2 MiB: off chip.
    # weights 64*64 + 64*9 = 4,672; off-chip bytes 3,150,400 at 1 byte/cycle = 3,150,400 cycles
    # compute = 24,576 * 64 * 64 / 256 = 393,216 cycles -> memory-bound: 3,150,400 + 64
    (big,) = estimate(one_conv(64, 64, (128, 192), kernel=1), U55_PINNED).layers
    assert (big.on_chip, big.compute_cycles, big.memory_cycles, big.cycles) == (False, 393_216, 3_150_400, 3_150_464)
    assert big.bound == "memory"
    # Half the rows fit (1,572,864 bytes): SRAM 1,572,864 / 8 = 196,608 cycles = compute 196,608: 196,672 in all,
    # so twice the work costs 16x the time once the activations spill.
    (half,) = estimate(one_conv(64, 64, (64, 192), kernel=1), U55_PINNED).layers
    assert (half.on_chip, half.cycles) == (True, 196_672)


def two_convs():
    b = QDQGraphBuilder(seed=1)
    x = b.input((1, 16, 64, 64))
    y = b.conv(x, 32, relu=True)
    b.output(b.conv(y, 16, kernel=1, relu=True))
    return parse_qdq(b.build())


def test_totals():
    est = estimate(two_convs(), U55_PINNED)
    first, second = est.layers
    # second: 1x1 32 -> 16 at 64x64: work 4,096 * 16 * 32 = 2,097,152 -> 8,192 cycles; activations
    # 131,072 + 65,536 = 196,608 / 8 = 24,576 (memory-bound); + 64
    assert (first.cycles, second.cycles) == (73_792, 24_640)
    assert est.cycles == 98_432
    assert est.seconds == pytest.approx(98_432 / 500e6)
    assert est.fps == pytest.approx(500e6 / 98_432)
    assert est.macs == 18_874_368 + 2_097_152
    assert est.mac_utilisation == pytest.approx(20_971_520 / (98_432 * 256))
    # live at once: input + first output (65,536 + 131,072), then first + second output (131,072 + 65,536)
    assert est.peak_activation_bytes == 196_608
    assert est.weight_bytes == 4_896 + (512 + 16 * 9)


def test_unknown_board_is_a_clear_error():
    with pytest.raises(
        UnknownBoardError,
        match="unknown board 'jetson'; known boards: arm-npu, cortex-a55, cortex-a720ae, ethos-u55-256",
    ):
        estimate(two_convs(), "jetson")


def test_every_board_estimates_and_the_bigger_npu_is_faster():
    graph = two_convs()
    seconds = {
        b: estimate(graph, b).seconds for b in ("ethos-u55-256", "ethos-u65-512", "cortex-a55", "journey5-bayes")
    }
    assert seconds["ethos-u65-512"] < seconds["ethos-u55-256"]
    assert all(s > 0 for s in seconds.values())


def test_report_files_are_written_and_parse(tmp_path):
    est = estimate(two_convs(), U55_PINNED)
    measured = {"layers_s": [2 * layer.cycles / 500e6 for layer in est.layers], "total_s": 4 * est.seconds}
    paths = write_report(est, tmp_path, measured=measured)
    d = json.loads(paths["json"].read_text())
    assert {"format", "board", "accelerator", "clock_hz", "macs_per_cycle", "totals", "layers", "measurement"} <= set(d)
    assert set(d["totals"]) == {
        "cycles",
        "call_overhead_cycles",
        "latency_ms",
        "fps",
        "gmacs",
        "weight_bytes",
        "peak_activation_bytes",
        "mac_utilisation",
    }
    assert d["totals"]["cycles"] == 98_432
    assert [r["cycles"] for r in d["layers"]] == [73_792, 24_640]
    # estimates are half the measured layers and a quarter of the measured total
    assert d["measurement"]["median_abs_layer_error"] == pytest.approx(0.5)
    assert d["measurement"]["total_error"] == pytest.approx(-0.75)
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(est.layers) and tuple(rows[0]) == CSV_COLUMNS
    assert int(rows[1]["cycles"]) == 24_640
    page = paths["html"].read_text()
    assert "<svg" in page and page.count("<rect") == len(est.layers) and "98,432" in page


def test_report_without_measurement_has_no_error_columns():
    d = perf_dict(estimate(two_convs(), U55_PINNED))
    assert "measurement" not in d and d["layers"][0]["measured_ms"] is None


def test_compile_writes_the_perf_report(tmp_path):
    from fcos3d.compiler.build import compile_onnx

    b = QDQGraphBuilder(seed=2)
    b.output(b.conv(b.input((1, 3, 8, 8)), 4, relu=True))
    compile_onnx(b.build(), "host", tmp_path)
    d = json.loads((tmp_path / "perf.json").read_text())
    assert d["board"] == "host" and len(d["layers"]) == 1
    assert (tmp_path / "perf.csv").is_file() and "<svg" in (tmp_path / "perf.html").read_text()


def test_estimate_only_board_refuses_to_compile(tmp_path):
    from fcos3d.compiler.build import compile_onnx

    b = QDQGraphBuilder(seed=2)
    b.output(b.conv(b.input((1, 3, 8, 8)), 4))
    with pytest.raises(ValueError, match="estimate-only.*fcos3d perf --target journey5-bayes"):
        compile_onnx(b.build(), "journey5-bayes", tmp_path)
    # and its reports say so
    from fcos3d.int8.reader import parse_qdq

    graph = parse_qdq(b.build())
    assert "estimate only" in estimate(graph, "journey5-bayes").accelerator
    assert "estimate only" not in estimate(graph, U55).accelerator  # Ethos-U55 compiles (TOSA + Vela)


def _layer(op, work, macs):
    return LayerEstimate("l", op, (1, 1, 1, 1), macs, work, 0, 0, True, 0, 0, 0, 0)


def test_fit_host_recovers_known_figures():
    # Synthetic host: convs at 0.5 MAC/cycle, depthwise at 0.25, Adds at 0.05 elements/cycle, 10,000 cycles a
    # layer. Measured seconds = (work / throughput + 10,000) / clock; the fit must give the figures back.
    clock = 2e9
    layers = [_layer("Conv", w, w) for w in (10_000, 200_000, 3_000_000)]
    layers += [_layer("DepthwiseConv", w, w) for w in (50_000, 400_000)]
    layers += [_layer("Add", w, 0) for w in (4_096, 65_536)]
    rate = {"Conv": 0.5, "DepthwiseConv": 0.25, "Add": 0.05}
    seconds = [(layer.work / rate[layer.op] + 10_000) / clock for layer in layers]
    fitted = fit_host(layers, seconds, clock)
    assert fitted["macs_per_cycle"] == pytest.approx(0.5)
    assert fitted["depthwise_macs_per_cycle"] == pytest.approx(0.25)
    assert fitted["add_per_cycle"] == pytest.approx(0.05)
    assert fitted["elementwise_per_cycle"] == pytest.approx(0.05)
    assert fitted["op_overhead_cycles"] == pytest.approx(10_000)
    assert fitted["rms_rel_error"] < 1e-9
    board = calibrated_board(load_board("host"), fitted, "test")
    assert board.accelerator["depthwise_macs_per_cycle"] == pytest.approx(0.25)
    assert board.accelerator.figures["macs_per_cycle"].source == "test"


def test_accelerator_refuses_missing_figures_and_sources():
    fig = Figure("macs_per_cycle", 256, "MAC/cycle", "Vela")
    with pytest.raises(ValueError, match="missing figure.*block_oc"):
        Accelerator("x", MappingProxyType({"macs_per_cycle": fig}))
    figures = {f.name: f for f in load_board(U55).accelerator.figures.values()}
    figures["clock_hz"] = Figure("clock_hz", 1e9, "Hz", " ")
    with pytest.raises(ValueError, match="'clock_hz' has no source"):
        Accelerator("x", MappingProxyType(figures))


def test_board_without_accelerator_gives_a_clear_error(tmp_path):
    p = tmp_path / "b.toml"
    p.write_text('name = "b"\ndescription = "d"\n[target]\nkind = "llvm"\n')
    with pytest.raises(ValueError, match="no \\[accelerator\\] profile"):
        estimate(two_convs(), str(p))


def test_perf_command_compares_boards(tmp_path):
    import onnx
    from click.testing import CliRunner

    from fcos3d.cli.main import cli

    b = QDQGraphBuilder(seed=2)
    b.output(b.conv(b.input((1, 16, 64, 64)), 32, relu=True))
    onnx.save(b.build(), tmp_path / "m.onnx")
    result = CliRunner().invoke(
        cli,
        ["perf", "--target", U55, "--target", "ethos-u65-512", "--out", str(tmp_path / "o"), str(tmp_path / "m.onnx")],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    (layer,) = estimate(parse_qdq(tmp_path / "m.onnx"), U55).layers  # the packaged (Vela-fitted) board
    assert f"{layer.cycles:,}" in result.output and "ethos-u65-512" in result.output
    assert (tmp_path / "o" / U55 / "perf.html").is_file()
    bad = CliRunner().invoke(cli, ["perf", "--target", "jetson", str(tmp_path / "m.onnx")])
    assert bad.exit_code == 2 and "known boards" in bad.output
    assert np.isfinite(json.loads((tmp_path / "o" / U55 / "perf.json").read_text())["totals"]["fps"])


def _pinned_host(**extra):
    """A host profile with round figures (the packaged host.toml is refitted per machine): 1 GHz, 64 MAC slots a
    cycle (dense), 32 (depthwise), dot_lanes 16, 2 conv outputs, 4 packed words, 8 pad bytes and 16 in-kernel pad
    bytes a cycle, 100 cycles a layer, bandwidths so high that no layer is memory-bound (1 cycle), plus ``extra`` figures."""
    from dataclasses import replace

    board = load_board("host")
    figures = {k: f for k, f in board.accelerator.figures.items() if k not in OPTIONAL_FIGURES}
    values = {
        "clock_hz": 1e9,
        "macs_per_cycle": 64,
        "op_overhead_cycles": 100,
        "sram_bytes_per_s": 1e15,
        "dram_bytes_per_s": 1e15,
        "sram_bytes": 2**30,
        "depthwise_macs_per_cycle": 32,
        "dot_lanes": 16,
        "conv_outputs_per_cycle": 2,
        "pack_words_per_cycle": 4,
        "pad_bytes_per_cycle": 8,
        "channel_pad_bytes_per_cycle": 16,
        **extra,
    }
    for name, value in values.items():
        unit = figures[name].unit if name in figures else OPTIONAL_FIGURES[name]
        figures[name] = Figure(name, value, unit, "test: the hand-computed numbers' figure")
    return replace(board, accelerator=Accelerator(board.accelerator.name, MappingProxyType(figures)))


@pytest.fixture
def cpu(monkeypatch):
    """Pin the CPU the host estimate assumes (the compile's AMX decision follows the running CPU): call with an
    LLVM CPU name."""
    import tvm

    from fcos3d.compiler.latency import estimate as est

    def pin(mcpu: str):
        monkeypatch.setattr(est, "_host_target", lambda: tvm.target.Target({"kind": "llvm", "mcpu": mcpu}))

    return pin


def test_host_dense_conv_costs_dot_slots_outputs_packing_and_padding(cpu):
    cpu("skylake-avx512")  # VNNI, no AMX
    (layer,) = estimate(one_conv(16, 32, (64, 64)), _pinned_host()).layers
    assert (layer.op, layer.output_shape) == ("Conv", (1, 32, 64, 64))
    # R = 16 * 9 = 144 bytes = 36 words; 4,096 positions = 256 vectors of 16; gemm_tile(32, 4096, 16) = 8 x 3
    # (258 padded vectors x (1 + 13/24) = 397.75, the least), so 258 vectors.
    # MAC slots = 32 oc * 36 words * 258 vectors * 16 lanes * 4 = 19,021,824, times the tile's instructions per
    # dot, 1 + (8 + 3 + 2) / 24 = 37/24: work = 29,325,312 -> / 64 = 458,208 cycles
    # outputs 32 * 4,096 = 131,072 -> / 2 = 65,536; packed words 36 * 258 * 16 = 148,608 -> / 4 = 37,152;
    # pad_split bytes 16 * 66 * 66 = 69,696 -> / 8 = 8,712. compute = 569,608; memory 1 cycle; + 100.
    assert (layer.macs, layer.work) == (18_874_368, 29_325_312)
    assert (layer.compute_cycles, layer.memory_cycles, layer.cycles) == (569_608, 1, 569_708)


def test_host_dense_conv_on_amx_costs_tile_mac_slots(cpu):
    cpu("sapphirerapids")
    (layer,) = estimate(one_conv(16, 32, (64, 64)), _pinned_host(amx_macs_per_cycle=1024)).layers
    # on AMX tiles (32 channels: 2 x 16, 36 words: chunks of 12): no dot-instruction work; tile MAC slots =
    # 32 oc * 36 words * 4 * 4,096 positions (whole tiles of 32) = 18,874,368 -> / 1024 = 18,432 cycles;
    # outputs 131,072 -> / 2 = 65,536; packed words 36 * 4,096 = 147,456 -> / 4 = 36,864; pad_split 8,712 as
    # on VNNI. compute = 129,544; memory 1; + 100.
    assert (layer.macs, layer.work) == (18_874_368, 0)
    assert (layer.compute_cycles, layer.cycles) == (129_544, 129_644)
    # 24 channels are padded to 32 (intrinsics.amx_channels, as the compile pads the weights): the same tile MAC
    # slots and packed words, 3/4 of the outputs (98,304 -> / 2 = 49,152): compute = 113,160
    (padded,) = estimate(one_conv(16, 24, (64, 64)), _pinned_host(amx_macs_per_cycle=1024)).layers
    assert (padded.work, padded.compute_cycles) == (0, 113_160)
    # 3 channels would be more than doubled: the VNNI GEMM, as the compile does
    (vnni,) = estimate(one_conv(16, 3, (64, 64)), _pinned_host(amx_macs_per_cycle=1024)).layers
    assert vnni.work > 0


def test_host_depthwise_conv_counts_window_dot_instructions():
    (layer,) = estimate(one_conv(32, 32, (64, 64), groups=32), _pinned_host()).layers
    assert layer.op == "DepthwiseConv"
    # 3x3 stride 1: 1 phase, ceil(3/4) = 1 word a kernel row; 64 columns = 4 vectors of 16.
    # work = 32 channels * 64 rows * 4 vectors * 3 rows * 1 * 1 * 16 * 4 = 1,572,864 -> / 32 = 49,152 cycles
    # outputs 131,072 -> / 2 = 65,536; padded inside the kernel: row_w = 64 + 4 - 1 = 67 columns, right pad
    # max(1, 67 - 64 - 1) = 2: 32 * 66 rows * 67 = 141,504 bytes -> / 16 = 8,844. compute = 123,532; + 100.
    assert layer.work == 1_572_864
    assert (layer.compute_cycles, layer.cycles) == (123_532, 123_632)


def test_host_strided_depthwise_conv_pads_its_unsplit_rows_inside_the_kernel():
    (layer,) = estimate(one_conv(32, 32, (64, 64), groups=32, stride=2), _pinned_host()).layers
    # 3x3 stride 2 -> 32 x 32 on consecutive words (kernels.DepthwiseSpec.consecutive): 1 phase, ceil(3/4) = 1
    # word (2 phases of 1 word each before); 32 columns = 2 vectors of 16.
    # work = 32 channels * 32 rows * 2 vectors * 16 * 3 rows * 1 phase * 1 * 4 = 393,216 -> / 32 = 12,288 cycles
    # outputs 32,768 -> / 2 = 16,384; the unsplit padded rows: the last window ends at 2 * (32 - 1) + 4 = 66
    # columns, row_w = 33 strides, right pad max(1, 2 * 33 - 64 - 1) = 1: 32 * 66 rows * 66 = 139,392 bytes -> / 16
    # = 8,712. compute = 37,384; + 100.
    assert layer.work == 393_216
    assert (layer.compute_cycles, layer.cycles) == (37_384, 37_484)


def test_host_window_depthwise_costs_a_fixed_work_per_channel():
    graph = one_conv(32, 32, (64, 64), groups=32)
    (base,) = estimate(graph, _pinned_host()).layers
    (layer,) = estimate(graph, _pinned_host(window_channels_per_cycle=1 / 32)).layers
    # 32 channels at 1/32 channel a cycle: 1,024 cycles more (123,532 + 1,024 compute, + 100)
    assert (layer.compute_cycles, layer.cycles) == (124_556, 124_656)
    assert layer.cycles - base.cycles == 1_024
    # a dense conv has no window channels
    dense = one_conv(16, 32, (64, 64))
    assert (
        estimate(dense, _pinned_host(window_channels_per_cycle=1 / 32)).layers == estimate(dense, _pinned_host()).layers
    )


def test_host_context_term_adds_a_cost_per_activation_byte():
    (alone,) = estimate(one_conv(16, 32, (64, 64)), _pinned_host()).layers
    (inside,) = estimate(one_conv(16, 32, (64, 64)), _pinned_host(context_bytes_per_cycle=2)).layers
    # activations: in 65,536 + out 131,072 = 196,608 bytes -> / 2 = 98,304 more cycles
    assert inside.cycles - alone.cycles == 98_304


def test_npu_estimates_ignore_the_host_terms():
    from dataclasses import replace

    from fcos3d.compiler.latency.estimate import HOST_FIGURES, HOST_TERMS

    # No NPU board file has a host figure ...
    for name in (b for b in board_names() if b != "host"):
        assert not set(HOST_FIGURES) & set(load_board(name).accelerator.figures), name
    # ... and the per-conv host terms count nothing without dot_lanes: the pinned U55 numbers stay.
    figures = dict(U55_PINNED.accelerator.figures)
    for name in HOST_TERMS:
        figures[name] = Figure(name, 1.0, OPTIONAL_FIGURES[name], "test")
    board = replace(U55_PINNED, accelerator=Accelerator(U55_PINNED.accelerator.name, MappingProxyType(figures)))
    for graph in (one_conv(16, 32, (64, 64)), one_conv(32, 32, (64, 64), groups=32), two_convs()):
        assert estimate(graph, board).layers == estimate(graph, U55_PINNED).layers
    assert [layer.cycles for layer in estimate(two_convs(), board).layers] == [73_792, 24_640]


def test_fit_host_recovers_the_host_terms():
    # Convs at 64 MAC slots a cycle plus 2 outputs and 4 packed words a cycle, 1,000 cycles a layer.
    clock = 1e9
    layers = [_layer("Conv", w, w) for w in (10_000, 200_000, 3_000_000, 50_000, 700_000)]
    counts = [
        {"conv_outputs_per_cycle": o, "pack_words_per_cycle": p}
        for o, p in ((4_096, 100), (1_000, 9_000), (60_000, 30_000), (20_000, 500), (2_000, 70_000))
    ]
    seconds = [
        (layer.work / 64 + c["conv_outputs_per_cycle"] / 2 + c["pack_words_per_cycle"] / 4 + 1_000) / clock
        for layer, c in zip(layers, counts, strict=True)
    ]
    fitted = fit_host(layers, seconds, clock, counts)
    assert fitted["macs_per_cycle"] == pytest.approx(64)
    assert fitted["conv_outputs_per_cycle"] == pytest.approx(2)
    assert fitted["pack_words_per_cycle"] == pytest.approx(4)
    assert fitted["op_overhead_cycles"] == pytest.approx(1_000)


def test_fit_context_moves_the_overhead_and_fits_a_cost_per_call_and_per_byte():
    from fcos3d.compiler.latency.fit import fit_context

    # measured = estimate + 3,000 cycles a call - 500 cycles an op + bytes / 4
    shapes = ((1e6, 10, 1e5), (5e7, 300, 4e7), (2e5, 40, 1e4), (3e4, 3, 2e3))
    graphs = [(e, n, b, e + 3_000 - 500 * n + b / 4) for e, n, b in shapes]
    fitted = fit_context(graphs, 2_000)
    assert fitted["op_overhead_cycles"] == pytest.approx(1_500)
    assert fitted["call_overhead_cycles"] == pytest.approx(3_000)
    assert fitted["context_bytes_per_cycle"] == pytest.approx(4)


def test_fit_context_drops_a_term_that_would_cost_less_than_nothing():
    from fcos3d.compiler.latency.fit import fit_context

    # measured = estimate - 4,000 cycles a call + bytes / 4: a negative call cost is dropped and the rest refitted
    shapes = ((1e6, 10, 1e5), (5e7, 300, 4e7), (2e5, 40, 1e4), (3e4, 3, 2e3))
    graphs = [(e, n, b, e - 4_000 + b / 4) for e, n, b in shapes]
    fitted = fit_context(graphs, 2_000)
    assert "call_overhead_cycles" not in fitted
    assert fitted["context_bytes_per_cycle"] > 0
    assert fitted["op_overhead_cycles"] < 2_000  # the lost call cost goes to the per-op term


def test_host_call_overhead_is_paid_once_per_inference():
    plain = estimate(two_convs(), _pinned_host())
    called = estimate(two_convs(), _pinned_host(call_overhead_cycles=2_500))
    assert called.layers == plain.layers  # not a per-layer cost
    assert (called.cycles - plain.cycles, called.totals()["call_overhead_cycles"]) == (2_500, 2_500)
    assert plain.totals()["call_overhead_cycles"] == 0


def test_host_extra_kernels_count_the_kernels_each_op_launches():
    from dataclasses import replace

    from fcos3d.compiler.latency.estimate import host_extra_kernels
    from fcos3d.int8.ops import MaxPool

    acc = _pinned_host().accelerator
    (dense,) = one_conv(16, 32, (64, 64)).ops  # 3x3, pads 1, stride 1, symmetric
    (depthwise,) = one_conv(32, 32, (64, 64), groups=32).ops
    cases = {
        "padded 3x3: pad_split + im2col + GEMM": (dense, 2),
        "1x1 unpadded: im2col reads the input": (replace(dense, pads=(0, 0, 0, 0)), 1),
        "1x1 strided: pad_split splits the phases": (replace(dense, pads=(0, 0, 0, 0), strides=(2, 2)), 2),
        "asymmetric padded: zero-point pad + im2col (reads the padded copy)": (
            replace(dense, input_zero_point=-128),
            2,
        ),
        "depthwise: padded inside the dot kernel": (depthwise, 0),
        "strided depthwise: padded inside too, the phases read in place": (replace(depthwise, strides=(2, 2)), 0),
        "asymmetric depthwise: zero-point pad": (replace(depthwise, input_zero_point=5), 1),
        "max pool: pad_split + the vector max": (MaxPool("p", "x", "y", (3, 3), (2, 2), (1, 1, 1, 1)), 1),
        "dilated max pool: TOPI's, one kernel": (
            MaxPool("p", "x", "y", (2, 2), (1, 1), (0, 0, 0, 0), False, (2, 2)),
            0,
        ),
    }
    assert {k: host_extra_kernels(op, acc) for k, (op, _) in cases.items()} == {k: n for k, (_, n) in cases.items()}
    assert host_extra_kernels(dense, U55_PINNED.accelerator) == 0  # not a host profile


def test_host_kernel_launch_cost_is_paid_per_extra_kernel():
    plain = estimate(one_conv(16, 32, (64, 64)), _pinned_host()).layers[0]
    launched = estimate(one_conv(16, 32, (64, 64)), _pinned_host(kernel_launch_cycles=500)).layers[0]
    assert launched.cycles - plain.cycles == 2 * 500  # pad_split and im2col beyond the GEMM


def test_fit_host_recovers_the_kernel_launch_cost_and_honours_row_weights():
    clock = 1e9
    layers = [_layer("Conv", w, w) for w in (10_000, 200_000, 3_000_000, 50_000, 700_000, 90_000)]
    extra = [2, 1, 2, 0, 1, 3]
    counts = [{"extra_kernels": k} for k in extra]
    seconds = [(layer.work / 64 + k * 700 + 300) / clock for layer, k in zip(layers, extra, strict=True)]
    fitted = fit_host(layers, seconds, clock, counts)
    assert fitted["kernel_launch_cycles"] == pytest.approx(700)
    assert fitted["op_overhead_cycles"] == pytest.approx(300)
    # Two models that disagree (64 vs 32 MAC slots a cycle): the rows weighted up decide.
    slow = [(layer.work / 32 + 300) / clock for layer in layers]
    fast = [(layer.work / 64 + 300) / clock for layer in layers]
    both, times = layers + layers, fast + slow
    first = fit_host(both, times, clock, None, [1.0] * 6 + [1e-4] * 6)
    second = fit_host(both, times, clock, None, [1e-4] * 6 + [1.0] * 6)
    assert first["macs_per_cycle"] == pytest.approx(64, rel=1e-3)
    assert second["macs_per_cycle"] == pytest.approx(32, rel=1e-3)


def test_host_lut_average_pool_is_a_kind_of_its_own_costed_per_window_element(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "int8"))
    from zoo import DEFAULTS, odd_convs, quantize

    from fcos3d.compiler.check import check_onnx

    graph = check_onnx(quantize(odd_convs(), DEFAULTS, tmp_path, "odd_convs")).graph
    pools = [i for i, op in enumerate(graph.ops) if type(op).__name__ == "LutAveragePool"]
    assert len(pools) == 2
    host = estimate(graph, _pinned_host(lut_avgpool_per_cycle=0.5)).layers
    # the 3x3 stride-2 pool of 16 x 16 x 16 -> 16 x 8 x 8: 1,024 outputs x 9 window elements, at 0.5 a cycle
    assert (host[pools[0]].op, host[pools[0]].work) == ("LutAveragePool", 9_216)
    assert host[pools[0]].compute_cycles == 18_432
    # the 2x2 pool of 16 x 8 x 8 -> 16 x 4 x 4: 256 outputs x 4
    assert host[pools[1]].work == 1_024
    # an NPU profile keeps its pooling pass: kind AveragePool, one unit per output
    npu = estimate(graph, U55_PINNED).layers
    assert npu[pools[0]].op == "AveragePool"


def test_calibrate_host_takes_whole_module_times_from_the_benchmark(tmp_path):
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("calibrate_host", root / "scripts" / "calibrate_host.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"rows": [{"model": "fcos3d_synthetic", "measured_ms": 6.5}]}))
    runs = [{"layers_s": [1e-3], "total_s": 9e-3}, {"layers_s": [2e-3], "total_s": 3e-3}]
    out = mod._with_totals(["b/fcos3d_synthetic_int8.onnx", "b/perf_mix.onnx"], runs, results)
    # the benchmark's time replaces the first model's total; the layers and the model it lacks keep theirs
    assert out == [{"layers_s": [1e-3], "total_s": 6.5e-3}, runs[1]]
    # a missing results file: one line that names it and the command that makes it
    done = subprocess.run(
        [sys.executable, str(root / "scripts" / "calibrate_host.py"), "m.onnx", "--totals", str(tmp_path / "no.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"{tmp_path / 'no.json'}: no such file; run benchmarks/host_estimate_vs_measured.py first"
    )
