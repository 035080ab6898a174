"""Load a checkpoint into a model: ``model = LoadCheckpoint(path, ...)(model)`` (HAT's converter shape).

Loads with torch.load(weights_only=True), renames keys (a dict or a function; lite0_key_mapping for
EfficientNet-Lite0's ImageNet weights), and refuses missing, unexpected or mis-shaped keys unless told.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fcos3d.errors import Fcos3dError

from .efficientnet import B0_STAGES

__all__ = [
    "LoadCheckpoint",
    "LoadReport",
    "RGBInputToYUV",
    "YUV_TO_RGB",
    "lite0_key_mapping",
    "read_state_dict",
    "torch_load_error",
]

log = logging.getLogger(__name__)

KeyMapping = Callable[[str], "str | None"] | Mapping[str, "str | None"]


@dataclass
class LoadReport:
    """What a load did: keys of the model left untouched, checkpoint keys not used, keys dropped by the mapping."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def torch_load_error(path, exc: Exception, fix: str) -> Fcos3dError:
    """One line for a file that ``torch.load(weights_only=True)`` refused. A pickled Python object is refused
    because loading it could run code: torch's advice to load the file anyway is deliberately not repeated."""
    text = str(exc).strip()
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return Fcos3dError(
            f"{path}: holds a pickled Python object ({found.group(1)}) besides tensors, and loading it could run "
            f"code, so it is not loaded; {fix}"
        )
    if "Weights only load failed" in text:
        return Fcos3dError(f"{path}: not a loadable checkpoint (not a weights-only torch file); {fix}")
    first = text.splitlines()[0] if text else type(exc).__name__
    return Fcos3dError(f"{path}: not a loadable checkpoint ({first[:160]}); {fix}")


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file: a bare state dict, or our {"state_dict": ..., meta...} format."""
    path = Path(path)
    if not path.is_file():
        raise Fcos3dError(f"{path}: checkpoint file not found: check the path in the config")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for non-checkpoints and pickled objects
        raise torch_load_error(path, e, "re-save it as a dict of tensors") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise Fcos3dError(f"{path}: not a state dict (expected a dict of tensors or {{'state_dict': ...}}): re-save it")
    return dict(obj)


def _allowed(key: str, allow: bool | Sequence[str]) -> bool:
    if isinstance(allow, bool):
        return allow
    return any(key.startswith(p) for p in allow)


class LoadCheckpoint:
    """Callable converter loading a checkpoint into a model (or into ``model.<submodule>``).

    Args:
        checkpoint_path: a torch.save file of tensors (bare state dict or {"state_dict": ...}).
        allow_miss: True, or key prefixes (of the target module's keys) that may stay unloaded.
        ignore_extra: True, or key prefixes (after mapping) of checkpoint keys that may go unused.
        key_mapping: dict or function from checkpoint key to target key. A key absent from a dict
            keeps its name; a mapped value of None drops the key on purpose (reported as dropped,
            never as unexpected).
        submodule: load into ``model.get_submodule(submodule)`` (e.g. "backbone"); keys are relative to it.

    BatchNorm ``num_batches_tracked`` counters are never reported missing (they only matter with
    momentum=None). After the call, ``self.report`` holds a LoadReport.
    """

    def __init__(
        self,
        checkpoint_path,
        allow_miss: bool | Sequence[str] = False,
        ignore_extra: bool | Sequence[str] = False,
        key_mapping: KeyMapping | None = None,
        submodule: str | None = None,
    ):
        self.checkpoint_path = Path(checkpoint_path)
        self.allow_miss = allow_miss
        self.ignore_extra = ignore_extra
        self.key_mapping = key_mapping
        self.submodule = submodule
        self.report: LoadReport | None = None

    def _map(self, key: str) -> str | None:
        m = self.key_mapping
        if m is None:
            return key
        if isinstance(m, Mapping):
            return m.get(key, key)
        return m(key)

    def __call__(self, model: nn.Module) -> nn.Module:
        path = self.checkpoint_path
        try:
            target = model.get_submodule(self.submodule) if self.submodule else model
        except AttributeError:
            raise Fcos3dError(
                f"{path}: the model has no submodule {self.submodule!r} to load into: fix submodule (e.g. 'backbone')"
            ) from None
        where = f"model.{self.submodule}" if self.submodule else "the model"
        report = LoadReport()
        mapped: dict[str, torch.Tensor] = {}
        for key, value in read_state_dict(path).items():
            new = self._map(key)
            if new is None:
                report.dropped.append(key)
            else:
                mapped[new] = value

        own = target.state_dict()
        for key, value in mapped.items():
            if key not in own:
                report.unexpected.append(key)
            elif own[key].shape != value.shape:
                raise Fcos3dError(
                    f"{path}: {key} has shape {tuple(value.shape)} in the checkpoint but {tuple(own[key].shape)} in "
                    f"{where}: the checkpoint is for another architecture (check model_type/channels or key_mapping)"
                )
            else:
                report.loaded.append(key)
        report.missing = [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]

        bad_missing = [k for k in report.missing if not _allowed(k, self.allow_miss)]
        bad_extra = [k for k in report.unexpected if not _allowed(k, self.ignore_extra)]
        if bad_missing:
            raise Fcos3dError(
                f"{path}: {len(bad_missing)} key(s) of {where} are not in the checkpoint (first: {bad_missing[0]}): "
                f"set allow_miss=True (or prefixes) if they are meant to train from scratch, or fix key_mapping"
            )
        if bad_extra:
            raise Fcos3dError(
                f"{path}: {len(bad_extra)} checkpoint key(s) have no place in {where} (first: {bad_extra[0]}): "
                f"set ignore_extra=True (or prefixes) to skip them, or fix key_mapping/submodule"
            )

        target.load_state_dict({k: mapped[k] for k in report.loaded}, strict=False)
        log.info(
            "%s: loaded %d key(s) into %s; %d missing, %d unexpected, %d dropped",
            path,
            len(report.loaded),
            where,
            len(report.missing),
            len(report.unexpected),
            len(report.dropped),
        )
        if report.missing:
            log.info("missing (kept as initialised): %s", ", ".join(report.missing))
        if report.unexpected:
            log.info("unexpected (ignored): %s", ", ".join(report.unexpected))
        self.report = report
        return model


# Block index of the reference EfficientNet (a flat list of 16 blocks for b0/lite0) -> (stage, block).
_LITE0_BLOCKS = [(s, j) for s, row in enumerate(B0_STAGES) for j in range(row[0])]
_LITE0_PARTS = {
    "_expand_conv": "expand.conv",
    "_bn0": "expand.bn",
    "_depthwise_conv": "dw.conv",
    "_bn1": "dw.bn",
    "_se_reduce": "se.reduce",
    "_se_expand": "se.expand",
    "_project_conv": "project.conv",
    "_bn2": "project.bn",
}
_LITE0_TOP = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn", "_fc": "fc"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TOP_KEY = re.compile(r"(\w+)\.(\w+)$")


def lite0_key_mapping(key: str) -> str | None:
    """Key of efficientnet_lite_pytorch's Lite0 (and B0) state dict -> key of our EfficientNet.

    ``_blocks.3._depthwise_conv.weight`` -> ``stages.2.0.dw.conv.weight``; ``_conv_stem`` -> ``stem.conv``;
    ``_conv_head``/``_bn1``/``_fc`` -> ``head``/``fc`` (present in our model only with include_top=True).
    Unknown keys come back unchanged, so they surface as unexpected.
    """
    m = _BLOCK_KEY.match(key)
    if m:
        idx, part, leaf = int(m.group(1)), m.group(2), m.group(3)
        if idx < len(_LITE0_BLOCKS) and part in _LITE0_PARTS:
            s, j = _LITE0_BLOCKS[idx]
            return f"stages.{s}.{j}.{_LITE0_PARTS[part]}.{leaf}"
        return key
    m = _TOP_KEY.match(key)
    if m and m.group(1) in _LITE0_TOP:
        return f"{_LITE0_TOP[m.group(1)]}.{m.group(2)}"
    return key


# (R, G, B) - 128 = YUV_TO_RGB @ ((Y, U, V) - 128) for cv2's COLOR_RGB2YUV (BT.601, full range): the
# inverse of the conversion ToTensor(to_yuv=True) applies. The first column is all ones, so with the same
# (x - 128) / 128 normalisation on both sides the normalised RGB is YUV_TO_RGB @ the normalised YUV.
YUV_TO_RGB = ((1.0, 0.0, 1.140), (1.0, -0.395, -0.581), (1.0, 2.032, 0.0))


@dataclass
class RGBInputToYUV:
    """Converter: make a first conv whose (pretrained) weights read RGB read the YUV444 input instead.

    ImageNet weights (EfficientNet-Lite0's) were trained on RGB; the network here sees YUV444
    (ToTensor(to_yuv=True), the board's camera format) normalised as (x - 128) / 128. Folding the
    linear YUV -> RGB conversion into the conv's input channels, W'[:, k] = sum_c W[:, c] YUV_TO_RGB[c][k],
    gives on a YUV image exactly what the pretrained conv gave on the same image in RGB with the same
    normalisation (up to cv2's uint8 rounding and clipping), so the pretrained features start where they
    were trained instead of on scrambled colours. Run it after the LoadCheckpoint that loads the RGB
    weights; ``conv`` is the module path of that first conv in the model.
    """

    conv: str = "backbone.stem.conv"

    def __call__(self, model: nn.Module) -> nn.Module:
        try:
            conv = model.get_submodule(self.conv)
        except AttributeError:
            raise Fcos3dError(
                f"RGBInputToYUV: the model has no module {self.conv!r}: give the path of its first conv"
            ) from None
        if not isinstance(conv, nn.Conv2d) or conv.in_channels != 3 or conv.groups != 1:
            raise Fcos3dError(f"RGBInputToYUV: {self.conv} is not a dense conv with 3 input channels")
        with torch.no_grad():
            m = torch.tensor(YUV_TO_RGB, dtype=conv.weight.dtype, device=conv.weight.device)  # (3 rgb, 3 yuv)
            conv.weight.copy_(torch.einsum("ochw,ck->okhw", conv.weight, m))
        return model
