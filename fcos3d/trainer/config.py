"""Experiment configs: plain Python files whose top-level names are HAT-shaped dicts, and one build().

A dict's ``type`` is the class or function itself (no string registry); ``build`` instantiates nested
dicts depth-first, so ``dict(type=FCOS3D, backbone=dict(type=EfficientNet, ...))`` becomes the object.
"""

from __future__ import annotations

import inspect
import runpy
from pathlib import Path
from typing import Any

from ..errors import Fcos3dError

__all__ = ["load_config", "build", "Lazy", "param"]

# Values given on the command line (``--set name=value``) for the config being loaded.
_OVERRIDES: dict[str, Any] = {}
_USED: set[str] = set()
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def param(name: str, default: Any) -> Any:
    """A config value the user may override with ``--set name=value`` (e.g. data_root, ckpt_dir).

    The override arrives as text and is converted to the default's type (int, float, bool, str).
    """
    if name not in _OVERRIDES:
        return default
    _USED.add(name)
    value = _OVERRIDES[name]
    if isinstance(default, bool):
        text = str(value).strip().lower()
        if text not in _TRUE + _FALSE:
            raise Fcos3dError(f"--set {name}={value}: not a boolean; use one of {', '.join(_TRUE + _FALSE)}")
        return text in _TRUE
    if isinstance(default, (int, float)) and isinstance(value, str):
        try:
            return type(default)(value)
        except ValueError:
            kind = "an integer" if isinstance(default, int) else "a number"
            raise Fcos3dError(f"--set {name}={value}: not {kind} (the config's default is {default!r})") from None
    return value


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a config file and return its public top-level names (those not starting with "_").

    overrides: values for the config's ``param(name, default)`` calls; a name the config does not
    declare is an error (a typo must not be silently ignored).
    """
    path = Path(path)
    if not path.is_file():
        raise Fcos3dError(
            f"{path}: config file not found; pass a file from configs/, e.g. configs/fcos3d_efficientnetb0_synthetic.py"
        )
    _OVERRIDES.clear()
    _OVERRIDES.update(overrides or {})
    _USED.clear()
    try:
        names = runpy.run_path(str(path), run_name="__fcos3d_config__")
    except Fcos3dError:
        raise
    except Exception as e:
        raise Fcos3dError(f"{path}: the config failed to run ({type(e).__name__}: {e}); fix the config file") from None
    finally:
        unused = set(_OVERRIDES) - _USED
        _OVERRIDES.clear()
    if unused:
        raise Fcos3dError(f"{path}: --set {sorted(unused)[0]}=... names no param() of this config; check the spelling")
    cfg = {k: v for k, v in names.items() if not k.startswith("_") and not inspect.ismodule(v)}
    cfg["__file__"] = str(path.resolve())
    return cfg


class Lazy(dict):
    """A dict that ``build`` leaves alone: for arguments that the callee builds later itself."""


def build(spec: Any, _where: str = "config", **overrides: Any) -> Any:
    """Instantiate ``spec``: dicts with a callable ``type`` are called with their built arguments.

    Lists, tuples and plain dicts are built element-wise; everything else is returned as is.
    ``overrides`` are extra keyword arguments for the top-level call.
    """
    if isinstance(spec, Lazy):
        return spec
    if isinstance(spec, dict):
        if "type" in spec:
            fn = spec["type"]
            if not callable(fn):
                raise Fcos3dError(
                    f"{_where}.type is {fn!r}, not a class or function: give the object itself, not its name"
                )
            kwargs = {k: build(v, f"{_where}.{k}") for k, v in spec.items() if k != "type"}
            kwargs.update(overrides)
            try:
                inspect.signature(fn).bind(**kwargs)
            except TypeError as e:
                raise Fcos3dError(
                    f"{_where}: {getattr(fn, '__name__', fn)} {e}; check the keys of this dict in the config"
                ) from None
            except ValueError:  # builtins without a signature
                pass
            return fn(**kwargs)
        return {k: build(v, f"{_where}.{k}") for k, v in spec.items()}
    if isinstance(spec, list):
        return [build(v, f"{_where}[{i}]") for i, v in enumerate(spec)]
    if isinstance(spec, tuple):
        return tuple(build(v, f"{_where}[{i}]") for i, v in enumerate(spec))
    return spec
