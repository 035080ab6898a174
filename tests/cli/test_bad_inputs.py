"""Every command against a table of bad inputs: each ends in exit 2 and one line on stderr that names the file or
flag (and the fix), never a traceback, a hang or a silent success (cli/boundary.py and the checks it relies on).

The commands run in this process (their console entry points, with sys.argv set), so the table stays fast.
"""

from __future__ import annotations

import re
import shutil
import socket
import sys
from pathlib import Path

import onnx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))  # rpc_servers, qdq_graphs
from rpc_servers import small_model  # noqa: E402

from fcos3d.cli import compile as compile_cli  # noqa: E402
from fcos3d.cli import main as main_cli  # noqa: E402
from fcos3d.cli import validate as validate_cli  # noqa: E402

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "fcos3d_efficientnetb0_synthetic.py"
ENTRIES = {"fcos3d": main_cli.main, "fcos3d-compile": compile_cli.main, "fcos3d-validate": validate_cli.main}


def _host_board_with(tmp: Path, name: str, value: str) -> Path:
    from importlib import resources

    text = (resources.files("fcos3d.boards") / "host.toml").read_text()
    p = tmp / f"{name}.toml"
    p.write_text(re.sub(r'(name = "clock_hz"\nvalue = )[^\n]*', rf"\g<1>{value}", text))
    return p


@pytest.fixture(scope="module")
def world(synth_nusc, synth_lmdb, tmp_path_factory):
    """Placeholders of the table -> paths: good inputs to break, and broken ones."""
    import torch

    from fcos3d.compiler.build import compile_onnx

    w = tmp_path_factory.mktemp("bad_inputs")
    (w / "a_file").write_text("a file where a folder belongs\n")
    # LMDBs: a good one, one cut short (an interrupted copy), one of random bytes
    for name in ("cut", "random"):
        shutil.copytree(synth_lmdb / "val_lmdb", w / name / "val_lmdb")
    data = (w / "cut" / "val_lmdb" / "data.mdb").read_bytes()
    (w / "cut" / "val_lmdb" / "data.mdb").write_bytes(data[: len(data) // 3])
    (w / "random" / "val_lmdb" / "data.mdb").write_bytes(bytes(range(256)) * 400)
    (w / "foreign" / "val_lmdb").mkdir(parents=True)  # a pack target that pack did not make
    (w / "foreign" / "val_lmdb" / "notes.txt").write_text("mine")
    # ONNX: random bytes, and a small good model compiled into an artifact
    (w / "random.onnx").write_bytes(bytes(range(256)) * 20)
    onnx.save(small_model(0), w / "m.onnx")
    compile_onnx(w / "m.onnx", "host", w / "art")
    shutil.copytree(w / "art", w / "art_latin1")
    (w / "art_latin1" / "meta.json").write_bytes(b'{"format": "caf\xe9"}')
    (w / "db").mkdir()
    (w / "db" / "database_workload.json").write_text("garbage{\n")
    (w / "db" / "database_tuning_record.json").write_text("")
    # boards
    (w / "syntax.toml").write_text('name = "x"\ndescription = [\n')
    for name, value in (("clock0", "0"), ("negative", "-5"), ("nan", "nan"), ("inf", "inf")):
        _host_board_with(w, name, value)
    # checkpoints
    torch.save({"format": "fcos3d-checkpoint", "format_version": 1, "stage": "float"}, w / "noweights.pth")
    torch.save({"format": "fcos3d-checkpoint", "format_version": 1, "stage": "qat"}, w / "noweights_qat.pth")
    torch.save({"x": print}, w / "pickled.pth")
    (w / "junk.pth").write_bytes(b"\x80\x02 not a checkpoint")
    # a work dir holding the config's ONNX (for fcos3d-validate)
    (w / "wd").mkdir()
    shutil.copy(w / "m.onnx", w / "wd" / "fcos3d_int8_qdq.onnx")
    return {"w": str(w), "lmdb": str(synth_lmdb), "nusc": str(synth_nusc[0]), "cfg": str(CONFIG)}


@pytest.fixture(scope="module")
def silent_port():
    """A port that accepts connections and never answers (not a TVM RPC server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


SETS = "--set data_root={lmdb} --set ckpt_dir={w}/wd"

# (prog, arguments, the one line expected on stderr): placeholders {w} {lmdb} {nusc} {cfg} {port}
TABLE = [
    # fcos3d data synth
    (
        "fcos3d",
        "data synth --out {w}/a_file/x --scenes 1",
        r"a_file/x.*: Not a directory; a part of this path is a file",
    ),
    ("fcos3d", "data synth --out {w}/s --image-size 10x10", r"'10x10' is too small"),
    ("fcos3d", "data synth --out {w}/s --image-size 100000x100000", r"'100000x100000' is too large"),
    ("fcos3d", "data synth --out {w}/s --image-size big", r"'big' is not WIDTHxHEIGHT"),
    ("fcos3d", "data synth --out {w}/s --scenes 0", r"--scenes must be at least 1"),
    # fcos3d data pack
    ("fcos3d", "data pack --src-data-dir {w}/nope --split-name val --version v1.0-mini", r"nope.*does not exist"),
    (
        "fcos3d",
        "data pack --src-data-dir {nusc} --split-name val --version v1.0-mini --num-workers -1 --target-data-dir {w}/p",
        r"num_workers=-1: use 0",
    ),
    (
        "fcos3d",
        "data pack --src-data-dir {nusc} --split-name val --version v1.0-mini --target-data-dir {w}/foreign",
        r"foreign/val_lmdb is not an LMDB made by `fcos3d data pack` \(it holds notes\.txt\)",
    ),
    (
        "fcos3d",
        "data pack --src-data-dir {nusc} --split-name val --version v1.0-mini --target-data-dir {w}/a_file",
        r"a_file: File exists; a file where a folder is needed",
    ),
    # fcos3d data show
    ("fcos3d", "data show --data-path {w}/cut/val_lmdb --save-path {w}/x.png", r"cut/val_lmdb/data\.mdb: truncated"),
    (
        "fcos3d",
        "data show --data-path {w}/random/val_lmdb --save-path {w}/x.png",
        r"random/val_lmdb/data\.mdb: not an LMDB data file",
    ),
    ("fcos3d", "data show --data-path {w} --save-path {w}/x.png", r"is not an LMDB made by `fcos3d data pack`"),
    ("fcos3d", "data show --data-path {lmdb}/val_lmdb --save-path {w}", r"bad_inputs\d*: Is a directory; is a folder"),
    ("fcos3d", "data show --data-path {lmdb}/val_lmdb --save-path {w}/a_file/x.png", r"a_file.*a file where a folder"),
    ("fcos3d", "data show --data-path {lmdb}/val_lmdb --save-path {w}/x.png --index 9999", r"--index 9999 is out of"),
    # fcos3d train
    ("fcos3d", "train --stage float --config {w}/nope.py", r"nope\.py: config file not found"),
    ("fcos3d", "train --stage float --config {cfg} " + SETS + " --set batch_size=0", r"batch_size=0: use a positive"),
    ("fcos3d", "train --stage float --config {cfg} " + SETS + " --set num_workers=-1", r"num_workers=-1: use 0"),
    ("fcos3d", "train --stage float --config {cfg} " + SETS + " --set batch_size=abc", r"--set batch_size=abc: not an"),
    ("fcos3d", "train --stage float --config {cfg} " + SETS + " --set bach_size=8", r"--set bach_size=\.\.\. names no"),
    ("fcos3d", "train --stage float --config {cfg} " + SETS + " --set oops", r"'oops' is not NAME=VALUE"),
    (
        "fcos3d",
        "train --stage float --config {cfg} --set data_root={w}/cut " + "--set ckpt_dir={w}/wd",
        r"cut/train_lmdb is not an LMDB|cut/train_lmdb/data\.mdb",
    ),
    # fcos3d predict / export / quant-report / infer
    ("fcos3d", "predict --stage float --config {cfg} " + SETS + " --ckpt {w}/noweights.pth", r"without weights"),
    ("fcos3d", "predict --stage float --config {cfg} " + SETS + " --ckpt {w}/pickled.pth", r"could run code"),
    ("fcos3d", "predict --stage float --config {cfg} " + SETS + " --ckpt {w}/junk.pth", r"junk\.pth: not a loadable"),
    ("fcos3d", "predict --stage float --config {cfg} " + SETS + " --ckpt {w}/none.pth", r"none\.pth: checkpoint not"),
    ("fcos3d", "export --config {cfg} " + SETS + " --ckpt {w}/noweights_qat.pth", r"noweights_qat\.pth: an fcos3d"),
    ("fcos3d", "export --config {cfg} " + SETS + " --ckpt {w}/noweights.pth", r"a 'float'-stage checkpoint where"),
    ("fcos3d", "quant-report --config {cfg} " + SETS, r"checkpoint"),
    (
        "fcos3d",
        "infer --config {cfg} " + SETS + " --image {w}/random.onnx --intrinsics 1,1,1,1 --save-path {w}/i.png",
        r"random\.onnx: not a readable image",
    ),
    # fcos3d trace
    ("fcos3d", "trace", r"give --config C .* or --onnx MODEL\.onnx"),
    ("fcos3d", "trace --onnx {w}/random.onnx --no-compiled", r"random\.onnx: not a valid ONNX model"),
    ("fcos3d", "trace --onnx {w}/m.onnx --image {w}/nope.jpg --no-compiled", r"--image .*nope\.jpg: no such file"),
    ("fcos3d", "trace --onnx {w}/m.onnx --image {w}/random.onnx --no-compiled", r"random\.onnx: not a readable image"),
    ("fcos3d", "trace --onnx {w}/m.onnx --artifact {w}/art", r"art/meta\.json: not a debug build .*--debug-outputs"),
    (
        "fcos3d",
        "trace --onnx {w}/m.onnx --no-compiled --no-onnxruntime",
        r"only the simulator would run: nothing to compare",
    ),
    ("fcos3d", "trace --config {w}/nope.py", r"nope\.py: config file not found"),
    # fcos3d compare-stages
    ("fcos3d", "compare-stages --config {w}/nope.py", r"nope\.py: config file not found"),
    # fcos3d boards / perf
    ("fcos3d", "boards show nope", r"unknown board 'nope'"),
    ("fcos3d", "perf {w}/random.onnx", r"random\.onnx: not a valid ONNX model"),
    ("fcos3d", "perf --target {w}/syntax.toml {w}/m.onnx", r"syntax\.toml: TOML syntax error"),
    ("fcos3d", "perf --target {w}/clock0.toml {w}/m.onnx", r"clock0\.toml: .*'clock_hz' must be a finite number > 0"),
    ("fcos3d", "perf --target {w}/negative.toml {w}/m.onnx", r"negative\.toml: .*must be a finite number > 0"),
    ("fcos3d", "perf --target {w}/nan.toml {w}/m.onnx", r"nan\.toml: .*must be a finite number > 0, got nan"),
    ("fcos3d", "perf --target {w}/inf.toml {w}/m.onnx", r"inf\.toml: .*must be a finite number > 0, got inf"),
    ("fcos3d", "perf --target {w}/missing.toml {w}/m.onnx", r"missing\.toml: cannot be read"),
    ("fcos3d", "perf {w}/m.onnx --out {w}/a_file", r"a_file. is a file"),
    # fcos3d-compile
    ("fcos3d-compile", "{w}/random.onnx --out {w}/c1", r"random\.onnx: .*(not a valid ONNX|not an ONNX)"),
    ("fcos3d", "export --config {cfg} " + SETS + " --out {w}", r"bad_inputs\d* is a folder: pass the ONNX file"),
    ("fcos3d-compile", "{w}/m.onnx --out {nusc}", r"holds no meta\.json .*not an artifact"),
    ("fcos3d-compile", "{w}/m.onnx --out {w}/c2 --tuning-db {w}/db", r"db: not a readable MetaSchedule tuning"),
    ("fcos3d-compile", "{w}/m.onnx --target {w}/nan.toml --out {w}/c3", r"nan\.toml: .*finite number > 0"),
    ("fcos3d-compile", "{w}/m.onnx --target nope", r"unknown board 'nope'"),
    # fcos3d-validate
    ("fcos3d-validate", "--align-bpu --config {cfg} " + SETS + " --artifact {w}/art_latin1", r"meta\.json: not UTF-8"),
    ("fcos3d-validate", "--align-bpu --config {cfg} " + SETS + " --rpc-timeout 0", r"--rpc-timeout"),
    ("fcos3d-validate", "--align-bpu --config {cfg} " + SETS + " --device nowhere", r"device='nowhere'"),
    (
        "fcos3d-validate",
        "--align-bpu --config {cfg} " + SETS + " --artifact {w}/art --device 127.0.0.1:{port} --rpc-timeout 1",
        r"127\.0\.0\.1:\d+: no answer within 1 s while connecting",
    ),
]


def _id(case):
    prog, args, _ = case
    words = [a for a in args.split() if not a.startswith("{") and "/" not in a and not a.startswith("--set")]
    return "-".join([prog.replace("fcos3d-", "")] + words[:4])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("prog, args, expected", TABLE, ids=[_id(c) for c in TABLE])
def test_bad_input_is_one_line_and_exit_2(world, silent_port, capsys, monkeypatch, prog, args, expected):
    argv = args.format(**world, port=silent_port).split()
    monkeypatch.setattr(sys, "argv", [prog, *argv])
    with pytest.raises(SystemExit) as e:
        ENTRIES[prog]()
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert e.value.code == 2, err
    # click's usage errors come with a "Usage:" / "Try" header; ours are exactly one line
    message = [ln for ln in lines if ln.startswith(("error:", "Error:"))]
    assert len(message) == 1, err
    assert all(ln.startswith(("Usage:", "Try ", "error:", "Error:")) for ln in lines), err
    assert re.search(expected, message[0]), message[0]


# -- the boundary itself ----------------------------------------------------------------------------------------


def test_a_loader_worker_s_error_is_its_own_one_line():
    from fcos3d.cli.boundary import one_line

    wrapped = (
        "Caught Fcos3dError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    raise Fcos3dError(...)\n'
        "fcos3d.errors.Fcos3dError: /d/train_lmdb/data.mdb: truncated (1 bytes); re-run `fcos3d data pack`"
    )
    assert one_line(wrapped) == "/d/train_lmdb/data.mdb: truncated (1 bytes); re-run `fcos3d data pack`"


def test_a_bug_keeps_its_traceback_and_asks_for_a_report(capsys, monkeypatch):
    import click

    from fcos3d.cli.boundary import REPORT, run_command

    @click.command()
    def broken():
        raise KeyError("a bug")

    monkeypatch.setattr(sys, "argv", ["broken"])
    with pytest.raises(SystemExit) as e:
        run_command(broken, "broken")
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" in err and err.strip().endswith(REPORT)


@pytest.mark.parametrize(
    "exc, expected",
    [
        (OSError(28, "No space left on device", "/out/x"), r"^/out/x: No space left on device; the disk is full"),
        (PermissionError(13, "Permission denied", "/out"), r"^/out: Permission denied; permission denied"),
        (MemoryError(), r"^out of memory"),
        (
            RuntimeError("DataLoader worker (pid 7) is killed by signal: Bus error. It is possible that ..."),
            r"^a data loader worker died of SIGBUS: .*data\.mdb",
        ),
    ],
)
def test_expected_library_errors(exc, expected):
    from fcos3d.cli.boundary import expected_message

    assert re.search(expected, expected_message(exc))
