"""fcos3d.boards: the packaged TOML files load into frozen Boards; unknown names list the known ones."""

from __future__ import annotations

import dataclasses

import pytest

from fcos3d.boards import ACCELERATOR_FIGURES, OPTIONAL_FIGURES, UnknownBoardError, board_names, load_board


def test_packaged_boards_load():
    assert {"host", "cortex-a55", "arm-npu"} <= set(board_names())
    arm = load_board("cortex-a55")
    assert arm.target_dict() == {
        "kind": "llvm",
        "mtriple": "aarch64-linux-gnu",
        "mcpu": "cortex-a55",
        "mattr": ["+neon", "+dotprod"],
    }
    assert arm.cross_compiler == "aarch64-linux-gnu-g++"
    assert load_board("host").cross_compiler is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        arm.name = "x"
    with pytest.raises(TypeError):
        arm.target["kind"] = "c"


def test_unknown_board_error_lists_known_boards():
    with pytest.raises(
        UnknownBoardError,
        match="known boards: arm-npu, cortex-a55, cortex-a720ae, ethos-u55-256, ethos-u65-512, ethos-u85-256, host, journey5-bayes",
    ):
        load_board("jetson")


def test_a_board_file_without_a_target_is_refused(tmp_path):
    p = tmp_path / "b.toml"
    p.write_text('name = "b"\ndescription = "d"\n')
    with pytest.raises(ValueError, match="missing key"):
        load_board(str(p))


def test_every_figure_of_every_board_has_a_source():
    for name in board_names():
        b = load_board(name)
        assert b.accelerator is not None, f"{name}: no [accelerator] profile"
        assert set(ACCELERATOR_FIGURES) <= set(b.accelerator.figures), name
        for f in b.figures:
            assert len(f.source.strip()) > 10, f"{name}.{f.name}: source {f.source!r}"
            assert f.unit, f"{name}.{f.name}: no unit"
        for f in b.figures:
            if f.name in ACCELERATOR_FIGURES or f.name in OPTIONAL_FIGURES:
                assert f.value > 0


def test_unpublished_figures_say_so():
    # Horizon publishes only the peak: every other Journey 5 figure must be marked as assumed or derived.
    j5 = load_board("journey5-bayes")
    for f in j5.figures:
        if f.name != "peak_tops":
            assert f.source.startswith(("assumption", "derived")), f"{f.name}: {f.source}"
    # and the derivation holds: 2 ops x MACs/cycle x clock = 128 TOPS
    acc = j5.accelerator
    assert 2 * acc["macs_per_cycle"] * acc["clock_hz"] == pytest.approx(128e12)


def test_ethos_u55_256_matches_vela():
    acc = load_board("ethos-u55-256").accelerator
    geometry = tuple(int(acc[k]) for k in ("macs_per_cycle", "block_h", "block_w", "block_oc", "block_ic"))
    assert geometry == (256, 2, 2, 8, 8)
    assert acc["block_h"] * acc["block_w"] * acc["block_oc"] * acc["block_ic"] == acc["macs_per_cycle"]
    assert (acc["clock_hz"], acc["sram_bytes_per_s"], acc["dram_bytes_per_s"]) == (500e6, 4e9, 0.5e9)
    # it compiles (TOSA + Vela); the estimate-only board is the Journey 5, whose BPU nothing of ours runs on
    assert not load_board("ethos-u55-256").estimate_only and load_board("journey5-bayes").estimate_only


def test_host_profile_is_calibrated():
    acc = load_board("host").accelerator
    for k in ("macs_per_cycle", "op_overhead_cycles"):
        # the command that measured them: scripts/calibrate_host.py, called fcos3d.compiler.calibrate before
        assert "calibrate" in acc.figures[k].source and "fit_host" in acc.figures[k].source


def _host_with_clock(tmp_path, value: str):
    import re
    from importlib import resources

    text = (resources.files("fcos3d.boards") / "host.toml").read_text()
    p = tmp_path / "b.toml"
    p.write_text(re.sub(r'(name = "clock_hz"\nvalue = )[^\n]*', rf"\g<1>{value}", text))
    return p


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "-inf"])
def test_a_figure_that_is_not_a_finite_positive_number_is_refused(tmp_path, value):
    from fcos3d.boards import BoardError

    p = _host_with_clock(tmp_path, value)
    with pytest.raises(BoardError, match=rf"{p}: accelerator .*figure 'clock_hz' must be a finite number > 0"):
        load_board(str(p))


@pytest.mark.parametrize(
    "content, match",
    [
        ('name = "x"\ndescription = [\n', r"TOML syntax error"),
        (b"name = '\xff'\n", r"not UTF-8 text"),
        ('name = "x"\ndescription = "d"\ntarget = 3\n', r"\[target\] must be a table"),
        (
            'name = "x"\ndescription = "d"\n[target]\nkind = "llvm"\n[[figures]]\nname = "a"\nvalue = "fast"\n'
            'source = "s"\n',
            r"every \[\[figures\]\] value must be a number",
        ),
        (
            'name = "x"\ndescription = "d"\n[target]\nkind = "llvm"\n[[figures]]\nname = "a"\nvalue = 1\n'
            'source = "s"\n[[figures]]\nname = "a"\nvalue = 2\nsource = "t"\n',
            r"figure\(s\) \['a'\] given more than once; keep one \[\[figures\]\] entry each",
        ),
    ],
)
def test_a_broken_board_file_is_one_error_naming_it(tmp_path, content, match):
    from fcos3d.boards import BoardError

    p = tmp_path / "b.toml"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(BoardError, match=rf"{p}: {match}"):
        load_board(str(p))
    with pytest.raises(BoardError, match=r"nope\.toml: cannot be read \(No such file"):
        load_board(str(tmp_path / "nope.toml"))


def test_arm_npu_names_the_ethos_u65_and_promises_no_accelerator_it_does_not_run_on():
    """arm-npu is an alias of the Ethos-U65-512 (compiled through TOSA + Vela); the aarch64 CPU build is
    cortex-a55, whose estimate describes that CPU, not an NPU."""
    from fcos3d.boards import alias_of

    assert alias_of("arm-npu") == "ethos-u65-512" and load_board("arm-npu") == load_board("ethos-u65-512")
    cpu = load_board("cortex-a55")
    assert "Cortex-A55 CPU" in cpu.accelerator.name and "NPU" not in cpu.accelerator.name
    assert alias_of("cortex-a55") is None and load_board("cortex-a55").name == "cortex-a55"
