"""Config loading and build(): nested instantiation, overrides and clear errors."""

import pytest

from fcos3d.errors import Fcos3dError
from fcos3d.trainer.config import Lazy, build, load_config


class Leaf:
    def __init__(self, a, b=2):
        self.a, self.b = a, b


class Node:
    def __init__(self, child, items):
        self.child, self.items = child, items


def test_build_nested():
    obj = build(dict(type=Node, child=dict(type=Leaf, a=1), items=[dict(type=Leaf, a=3, b=4), 5]))
    assert isinstance(obj.child, Leaf) and obj.child.a == 1 and obj.child.b == 2
    assert obj.items[0].b == 4 and obj.items[1] == 5


def test_build_overrides_and_lazy():
    obj = build(dict(type=Leaf, a=1), b=9)
    assert obj.b == 9
    lazy = Lazy(type=Leaf, a=1)
    assert build(dict(type=Node, child=lazy, items=[])).child is lazy


def test_build_bad_key_names_the_place():
    with pytest.raises(Fcos3dError, match=r"config\.child: Leaf .*unexpected keyword argument 'c'"):
        build(dict(type=Node, child=dict(type=Leaf, a=1, c=2), items=[]))
    with pytest.raises(Fcos3dError, match="not a class or function"):
        build(dict(type="Leaf", a=1))


def test_load_config(tmp_path):
    p = tmp_path / "cfg.py"
    p.write_text("import math\n_private = 1\nmodel = dict(lr=math.pi)\n")
    cfg = load_config(p)
    assert "model" in cfg and "_private" not in cfg and "math" not in cfg
    with pytest.raises(Fcos3dError, match="config file not found"):
        load_config(tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1/0\n")
    with pytest.raises(Fcos3dError, match="ZeroDivisionError"):
        load_config(bad)


def test_param_overrides(tmp_path):
    p = tmp_path / "cfg.py"
    p.write_text("from fcos3d.trainer.config import param\nroot = param('root', 'data')\nepochs = param('epochs', 3)\n")
    assert load_config(p)["root"] == "data"
    cfg = load_config(p, {"root": "elsewhere", "epochs": "7"})
    assert cfg["root"] == "elsewhere" and cfg["epochs"] == 7
    with pytest.raises(Fcos3dError, match="--set typo=... names no param"):
        load_config(p, {"typo": "1"})


def test_param_override_of_the_wrong_type_names_the_flag(tmp_path):
    p = tmp_path / "cfg.py"
    p.write_text(
        "from fcos3d.trainer.config import param\nbs = param('batch_size', 8)\nlr = param('lr', 0.1)\n"
        "amp = param('amp', False)\n"
    )
    with pytest.raises(Fcos3dError, match=r"--set batch_size=abc: not an integer \(the config's default is 8\)"):
        load_config(p, {"batch_size": "abc"})
    with pytest.raises(Fcos3dError, match=r"--set lr=fast: not a number"):
        load_config(p, {"lr": "fast"})
    with pytest.raises(Fcos3dError, match=r"--set amp=maybe: not a boolean"):
        load_config(p, {"amp": "maybe"})
    assert load_config(p, {"amp": "Yes"})["amp"] is True
