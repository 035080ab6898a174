"""fcos3d.boards: the packaged TOML files load into frozen Boards; unknown names list the known ones."""

from __future__ import annotations

import dataclasses

import pytest

from fcos3d.boards import UnknownBoardError, board_names, load_board


def test_packaged_boards_load():
    assert {"host", "arm-npu"} <= set(board_names())
    arm = load_board("arm-npu")
    assert arm.target_dict() == {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a55",
                                 "mattr": ["+neon", "+dotprod"]}  # fmt: skip
    assert arm.cross_compiler == "aarch64-linux-gnu-g++"
    assert load_board("host").cross_compiler is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        arm.name = "x"
    with pytest.raises(TypeError):
        arm.target["kind"] = "c"


def test_unknown_board_error_lists_known_boards():
    with pytest.raises(UnknownBoardError, match="known boards: arm-npu, host"):
        load_board("jetson")


def test_a_board_file_without_a_target_is_refused(tmp_path):
    p = tmp_path / "b.toml"
    p.write_text('name = "b"\ndescription = "d"\n')
    with pytest.raises(ValueError, match="missing key"):
        load_board(str(p))
