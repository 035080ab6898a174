"""align_bpu over a synthetic nuScenes val split with a tiny quantised FCOS3D compiled for the host: bit-exact,
board NDS == simulator NDS == int_infer NDS, a flipped element found where it is, and the CLI's exit codes."""

import copy
import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "quant"))

from quant_fixtures import tiny_float_model  # noqa: E402

SHAPE = (1, 3, 128, 192)  # (N, 3, H, W): synth_nusc's 320x180 images resize to 192x108, pad to 128
SIZE = (SHAPE[3], SHAPE[2])  # (W, H)


@pytest.fixture(scope="module")
def compiled(synth_nusc, tmp_path_factory):
    """(onnx path, host artifact folder, torch IntModel) of the tiny FCOS3D calibrated on four synthetic train JPEGs."""
    import torch

    from fcos3d.compiler.build import compile_onnx
    from fcos3d.quant.convert import Float2Calibration, Float2QAT
    from fcos3d.quant.export import export_qdq_onnx
    from fcos3d.quant.intmodel import QAT2Quantize
    from fcos3d.runtime.preprocess import prepare_jpeg
    from fcos3d.runtime.validate import camera_images

    root, version = synth_nusc
    _, infos = camera_images(root, version, "train", limit=4)
    imgs = [prepare_jpeg((root / i["file_name"]).read_bytes(), i["cam_intrinsic"], SIZE).x for i in infos]
    q = Float2Calibration()(copy.deepcopy(tiny_float_model()))
    q.train()
    with torch.no_grad():
        for x in imgs:
            q(torch.from_numpy(x).float() / 128)
    int_model = QAT2Quantize(SHAPE)(Float2QAT()(q).eval())
    out = tmp_path_factory.mktemp("validate")
    onnx_path = out / "fcos3d_int8.onnx"
    export_qdq_onnx(int_model, SHAPE, onnx_path)
    compile_onnx(onnx_path, "host", out / "artifact-host")
    return onnx_path, out / "artifact-host", int_model


def test_validate_imports_no_torch():
    import subprocess

    code = (
        "import sys; import fcos3d.runtime.validate; "
        "bad = [m for m in ('torch', 'torchvision') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _int_infer_metrics(int_model, lmdb_root: Path, out_dir: Path) -> dict:
    """The int_infer stage as `fcos3d predict --stage int_infer` runs it: LMDB, dataset transforms, IntInferModel."""
    from fcos3d.data.dataset import NuscenesMonoDataset
    from fcos3d.data.transforms import Normalize, Pad, Resize3D, ToTensor
    from fcos3d.quant.intmodel import IntInferModel
    from fcos3d.trainer.predict import model_forward, predict_split
    from fcos3d.trainer.stages import _val_loader

    transforms = [
        Resize3D(img_scale=SIZE, keep_ratio=True),
        Pad(size=SIZE),
        ToTensor(to_yuv=True),
        Normalize(mean=128.0, std=128.0),
    ]
    dataset = dict(type=NuscenesMonoDataset, data_path=f"{lmdb_root}/val_lmdb", transforms=transforms)
    cfg = {"val_data_loader": dict(dataset=dataset, batch_size=4, num_workers=0)}
    model = IntInferModel(int_model)
    return predict_split(model_forward(model), _val_loader(cfg), model.strides, out_dir)


@pytest.mark.slow
def test_align_bpu_bit_exact_and_board_nds_equals_simulator_and_int_infer(compiled, synth_nusc, synth_lmdb, tmp_path):
    from fcos3d.boxes.decode import group_outputs
    from fcos3d.eval.collect import DetectionCollector
    from fcos3d.runtime.preprocess import prepare_jpeg
    from fcos3d.runtime.reference.simulator import Simulator
    from fcos3d.runtime.validate import (
        REPORT_FILE,
        align_bpu,
        camera_images,
        collector_intrinsics,
        dequantize,
        model_strides,
    )

    onnx_path, art_dir, int_model = compiled
    root, version = synth_nusc
    done = []
    report = align_bpu(
        art_dir, onnx_path, root, version, "val", out_dir=tmp_path / "board", progress=lambda d, t: done.append((d, t))
    )
    n = report["images"]
    assert n == 18 and done[-1] == (n, n)  # 1 val scene x 3 key frames x 6 cameras
    assert report["mismatches"] == 0 and report["equal"]
    assert len(report["outputs"]) == 45 and all(o["total"] > 0 and o["mismatches"] == 0 for o in report["outputs"])
    assert 0.0 <= report["metrics"]["NDS"] <= 1.0
    assert json.loads((tmp_path / "board" / REPORT_FILE).read_text()) == report

    # The simulator's integers through the same decode and collector.
    sim = Simulator(onnx_path)
    meta, infos = camera_images(root, version, "val")
    strides = model_strides(onnx_path, sim.output_names)
    outputs = [{"name": o, "scales": sim.output_scales[o].tolist()} for o in sim.output_names]
    collector = DetectionCollector(meta, strides)
    for info in infos:
        p = prepare_jpeg((root / info["file_name"]).read_bytes(), info["cam_intrinsic"], SIZE)
        raw = group_outputs(dequantize(sim.run(p.x), outputs), strides)
        K = collector_intrinsics(p.cam_intrinsic)
        collector.add_image(raw, K, info["cam2ego"], info["ego2global"], info["sample_token"])
    sim_metrics = collector.evaluate(tmp_path / "sim")
    int_infer = _int_infer_metrics(int_model, synth_lmdb, tmp_path / "int_infer")

    board = report["metrics"]
    assert board["num_pred_boxes"] > 0  # something was decoded, so equal metrics are not vacuous
    results = {
        k: json.loads(Path(m["result_file"]).read_text())["results"]
        for k, m in (("board", board), ("sim", sim_metrics), ("int_infer", int_infer))
    }
    assert results["board"] == results["sim"] == results["int_infer"]
    for key in ("NDS", "mAP", "num_pred_boxes"):
        assert board[key] == sim_metrics[key] == int_infer[key], key


@pytest.mark.slow
def test_a_flipped_element_is_reported_where_it_is(compiled, synth_nusc, tmp_path, monkeypatch):
    from fcos3d.runtime import execute
    from fcos3d.runtime.validate import align_bpu

    onnx_path, art_dir, _ = compiled
    root, version = synth_nusc
    real_run, calls = execute.Artifact.run, []

    def flipped(self, x):
        out = real_run(self, x)
        calls.append(1)
        if len(calls) == 2:  # the second image
            out["depth_s16"] = out["depth_s16"].copy()
            out["depth_s16"][0, 0, 3, 5] += 7
        return out

    monkeypatch.setattr(execute.Artifact, "run", flipped)
    report = align_bpu(art_dir, onnx_path, root, version, "val", limit=3, out_dir=tmp_path)
    assert report["images"] == 3 and report["mismatches"] == 1 and not report["equal"]
    bad = [o for o in report["outputs"] if o["mismatches"]]
    assert [o["name"] for o in bad] == ["depth_s16"]
    first = bad[0]["first"]
    assert first["image"] == 1 and first["index"] == [0, 0, 3, 5] and first["board"] - first["sim"] == 7
    assert bad[0]["max_abs_diff"] == 7 and first["file_name"].endswith(".jpg")


def _write_config(path: Path, lmdb_root: Path, onnx_path: Path, ckpt_dir: Path) -> Path:
    path.write_text(f'''"""align-bpu test config: the val LMDB, the tiny ONNX and a work folder."""
from fcos3d.boxes.postprocess import PostProcess
from fcos3d.data.dataset import NuscenesMonoDataset
from fcos3d.trainer.config import param

ckpt_dir = param("ckpt_dir", {str(ckpt_dir)!r})
val_data_loader = dict(dataset=dict(type=NuscenesMonoDataset, data_path={str(lmdb_root / "val_lmdb")!r}),
                       batch_size=1, num_workers=0)
post_process = dict(type=PostProcess)
export_cfg = dict(path={str(onnx_path)!r})
''')
    return path


@pytest.mark.slow
def test_cli_exit_codes_and_tables(compiled, synth_lmdb, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from fcos3d.cli.validate import validate_cmd
    from fcos3d.runtime import execute

    onnx_path, art_dir, _ = compiled
    ckpt = tmp_path / "work"
    (ckpt / "predict" / "int_infer").mkdir(parents=True)
    (ckpt / "predict" / "int_infer" / "metrics.json").write_text(json.dumps({"NDS": 0.125, "mAP": 0.25}))
    cfg = _write_config(tmp_path / "cfg.py", synth_lmdb, onnx_path, ckpt)
    args = ["--align-bpu", "--config", str(cfg), "--artifact", str(art_dir), "--limit", "2"]
    runner = CliRunner()
    monkeypatch.setenv("COLUMNS", "200")  # rich: one table row per line

    ok = runner.invoke(validate_cmd, args)
    assert ok.exit_code == 0, ok.output
    assert "bit-exact" in ok.output and "no val sample has all 6 cameras among the first 2 images" in ok.output
    assert (ckpt / "align_bpu" / "align_report.json").is_file()

    # --limit 6: one sample seen whole, and every stage scored on that sample alone, not on the whole split (where
    # the board would count the samples past the limit as empty). int_infer's result file: the board's own boxes.
    six = [*args[:-1], "6"]
    first = runner.invoke(validate_cmd, six)
    report = json.loads((ckpt / "align_bpu" / "align_report.json").read_text())
    assert first.exit_code == 0 and len(report["scope"]["sample_tokens"]) == 1, first.output
    assert report["stage_metrics"]["int_infer"] is None  # its metrics.json is whole-split: not shown as if comparable
    board = report["metrics"]
    assert board["NDS"] > board["split_metrics"]["NDS"]  # 1 sample of 3 with boxes: the whole split scores it lower
    shutil.copy(ckpt / "align_bpu" / "results_nusc.json", ckpt / "predict" / "int_infer" / "results_nusc.json")
    again = runner.invoke(validate_cmd, six)
    assert again.exit_code == 0, again.output
    report = json.loads((ckpt / "align_bpu" / "align_report.json").read_text())
    assert report["stage_metrics"]["int_infer"]["NDS"] == report["metrics"]["NDS"] == board["NDS"]
    line = next(row for row in again.output.splitlines() if "int_infer" in row)
    assert f"{board['NDS']:.4f}" in line and "0.1250" not in again.output
    assert "1 val samples whose 6 cameras are all among the first 6 of 18 images" in " ".join(again.output.split())

    real_run = execute.Artifact.run

    def flipped(self, x):
        out = real_run(self, x)
        out["cls_score_s8"] = out["cls_score_s8"].copy()
        out["cls_score_s8"][0, 2, 1, 1] -= 1
        return out

    monkeypatch.setattr(execute.Artifact, "run", flipped)
    bad = runner.invoke(validate_cmd, args)
    assert bad.exit_code == 1, bad.output
    assert "cls_score_s8" in bad.output and "(0, 2, 1, 1)" in bad.output and "2 elements differ" in bad.output
    # the tracer ran the first mismatching image through a debug build: the layer that writes cls_score_s8 is named,
    # with its inputs still equal (the flip is in that output alone)
    traced = json.loads((ckpt / "align_bpu" / "align_report.json").read_text())
    assert "trace of image 0" in bad.output and "first at layer" in bad.output
    assert "its inputs are equal" in bad.output
    assert (ckpt / "align_bpu" / "trace" / "trace.csv").is_file()
    assert traced["mismatches"] == 2 and traced["trace"]["divergences"]["compiled (host)"]["inputs_equal"]
    monkeypatch.setattr(execute.Artifact, "run", real_run)

    missing = runner.invoke(validate_cmd, [*args[:2], str(tmp_path / "nope.py")])
    assert missing.exit_code == 2 and "config file not found" in missing.output
    no_onnx = _write_config(tmp_path / "cfg2.py", synth_lmdb, tmp_path / "absent.onnx", ckpt)
    r = runner.invoke(validate_cmd, ["--align-bpu", "--config", str(no_onnx)])
    assert r.exit_code == 2 and "absent.onnx" in r.output and "fcos3d export" in r.output
    wrong = runner.invoke(validate_cmd, [*args, "--device", "nohost"])
    assert wrong.exit_code == 2 and "HOST:PORT" in wrong.output


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_align_bpu_over_rpc_equals_the_local_run(compiled, synth_nusc, tmp_path):
    """The board over TVM RPC (a `tvm.exec.rpc_server` subprocess here): bit-exact, and the same detections."""
    pytest.importorskip("cloudpickle", reason="tvm.exec.rpc_server needs cloudpickle (pip install cloudpickle)")
    from rpc_servers import host_server_cmd, rpc_server

    from fcos3d.runtime.validate import align_bpu

    onnx_path, art_dir, _ = compiled
    root, version = synth_nusc
    local = align_bpu(art_dir, onnx_path, root, version, "val", limit=2, out_dir=tmp_path / "local")
    with rpc_server(host_server_cmd(), tmp_path / "server.log", timeout=60) as address:
        remote = align_bpu(art_dir, onnx_path, root, version, "val", device=address, limit=2, out_dir=tmp_path / "rpc")
    assert remote["device"] == address and remote["mismatches"] == 0 and remote["images"] == 2
    results = [json.loads(Path(r["metrics"]["result_file"]).read_text())["results"] for r in (local, remote)]
    assert results[0] == results[1] and local["metrics"]["NDS"] == remote["metrics"]["NDS"]


@pytest.mark.slow
def test_align_bpu_on_the_tosa_reference_model_equals_the_host_board(compiled, synth_nusc, tmp_path):
    """An Ethos-U artifact (model.tosa + Vela's command stream) runs on the TOSA reference model, the NPU's integer
    spec: every output element equals the simulator's, so its boxes and NDS are the host board's; it says so."""
    pytest.importorskip("tosa", reason="tosa-tools (the TOSA reference model) is not installed")
    from fcos3d.compiler.build import compile_onnx
    from fcos3d.runtime.tosa_reference import BOARD_LABEL
    from fcos3d.runtime.validate import align_bpu

    onnx_path, art_dir, _ = compiled
    root, version = synth_nusc
    result = compile_onnx(onnx_path, "ethos-u85-256", tmp_path / "artifact-ethos-u85-256")
    assert result.meta["backend"] == "tosa" and result.meta["vela"]["cpu_fallback"] is False
    npu = align_bpu(
        tmp_path / "artifact-ethos-u85-256", onnx_path, root, version, "val", limit=6, out_dir=tmp_path / "n"
    )
    host = align_bpu(art_dir, onnx_path, root, version, "val", limit=6, out_dir=tmp_path / "h")
    assert npu["equal"] and npu["mismatches"] == 0 and sum(o["total"] for o in npu["outputs"]) > 0
    assert npu["device_label"] == BOARD_LABEL and npu["board"] == "ethos-u85-256"
    assert npu["metrics"]["NDS"] == host["metrics"]["NDS"] is not None  # scored on the one sample seen whole
    assert npu["metrics"]["mAP"] == host["metrics"]["mAP"]


@pytest.mark.slow
def test_cli_target_an_ethos_u_board(compiled, synth_lmdb, tmp_path):
    """fcos3d-validate --align-bpu --target ethos-u85-256 compiles the config's ONNX for the NPU (TOSA + Vela) on
    first use and runs it on the TOSA reference model, saying so in its table."""
    pytest.importorskip("tosa", reason="tosa-tools (the TOSA reference model) is not installed")
    import os
    import subprocess

    onnx_path, _, _ = compiled
    ckpt = tmp_path / "work"
    cfg = _write_config(tmp_path / "cfg.py", synth_lmdb, onnx_path, ckpt)
    args = ["--align-bpu", "--config", str(cfg), "--target", "ethos-u85-256", "--limit", "2"]
    env = {**os.environ, "COLUMNS": "250", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "trainer")}
    r = subprocess.run([sys.executable, "-m", "fcos3d.cli.validate", *args], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "TOSA reference model (the NPU's integer spec), no hardware" in r.stdout and "bit-exact" in r.stdout
    assert (ckpt / "artifact-ethos-u85-256" / "model.tosa").is_file()
