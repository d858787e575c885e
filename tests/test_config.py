"""config: typed dataclass loading, errors naming keys and fields, save/hash."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from sptf_ray import config as cfg
from sptf_ray.errors import StageFailed


@dataclass
class Inner:
    lr: float = 1e-3
    layers: tuple[int, ...] = (128,)

    def validate(self):
        if self.lr <= 0:
            raise ValueError("inner.lr must be positive")


@dataclass
class Outer:
    name: str
    seed: int = 0
    mode: Literal["fast", "exact"] = "fast"
    split: dict[str, float] = field(default_factory=lambda: {"train": 0.7})
    out: Optional[str] = None
    inner: Inner = field(default_factory=Inner)
    validated: bool = False

    def validate(self):
        if self.seed < 0:
            raise ValueError("seed must be >= 0")


def test_load_from_dict_nested_and_coerced():
    obj = cfg.load_config(Outer, {"name": "x", "inner": {"lr": 1, "layers": [64, 32]}})
    assert obj.inner.lr == 1.0 and isinstance(obj.inner.lr, float)
    assert obj.inner.layers == (64, 32)


def test_unknown_keys_named():
    with pytest.raises(ValueError, match=r"inner\.lrr"):
        cfg.load_config(Outer, {"name": "x", "inner": {"lrr": 1}})
    with pytest.raises(ValueError, match="bogus"):
        cfg.load_config(Outer, {"name": "x", "bogus": 1})


def test_wrong_types_name_the_field():
    with pytest.raises(ValueError, match="seed"):
        cfg.load_config(Outer, {"name": "x", "seed": "3"})
    with pytest.raises(ValueError, match="seed"):
        cfg.load_config(Outer, {"name": "x", "seed": True})
    with pytest.raises(ValueError, match=r"inner\.layers\[1\]"):
        cfg.load_config(Outer, {"name": "x", "inner": {"layers": [1, "a"]}})
    with pytest.raises(ValueError, match="mode"):
        cfg.load_config(Outer, {"name": "x", "mode": "slow"})
    with pytest.raises(ValueError, match="name"):
        cfg.load_config(Outer, {})


def test_validate_called_on_nested_and_outer():
    with pytest.raises(ValueError, match="inner.lr"):
        cfg.load_config(Outer, {"name": "x", "inner": {"lr": -1.0}})
    with pytest.raises(ValueError, match="seed"):
        cfg.load_config(Outer, Outer(name="x", seed=-1))


def test_yaml_and_json_files_roundtrip(tmp_path):
    (tmp_path / "c.yaml").write_text("name: run\ninner:\n  lr: 1e-4\n")
    obj = cfg.load_config(Outer, str(tmp_path / "c.yaml"))
    assert obj.inner.lr == 1e-4  # YAML 1.1 would read '1e-4' as a string
    cfg.save_config(obj, str(tmp_path / "saved.yaml"))
    again = cfg.load_config(Outer, str(tmp_path / "saved.yaml"))
    assert again == obj
    (tmp_path / "c.json").write_text(json.dumps(cfg.config_to_dict(obj)))
    assert cfg.load_config(Outer, str(tmp_path / "c.json")) == obj


def test_config_to_dict_and_hash_stable():
    a = Outer(name="x", split={"train": 0.7, "val": 0.3})
    b = Outer(name="x", split={"val": 0.3, "train": 0.7})
    d = cfg.config_to_dict(a)
    assert d["inner"]["layers"] == [128]
    json.dumps(d)
    assert cfg.config_hash(a) == cfg.config_hash(b)
    assert cfg.config_hash(a) != cfg.config_hash(Outer(name="y"))


def test_fixed_length_tuple_fields_load_with_their_item_types():
    from dataclasses import dataclass

    from sptf_ray.config import load_config

    @dataclass
    class Window:
        span: tuple[int, float] = (1, 2.0)

    assert load_config(Window, {"span": [3, 4.5]}).span == (3, 4.5)
    with pytest.raises(ValueError, match="span"):
        load_config(Window, {"span": ["x", 4.5]})


def test_a_yaml_syntax_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsplit: {train: 0.7\n")
    with pytest.raises(ValueError, match=r"bad\.yaml is not valid YAML"):
        cfg.load_config(Outer, str(bad))


@pytest.mark.parametrize("raised, code, said", [
    (PermissionError(13, "Permission denied", "/ro/out"), 2, "error: [Errno 13] Permission denied: '/ro/out'"),
    (NotADirectoryError(20, "Not a directory", "f/out"), 2, "error: [Errno 20] Not a directory"),
    (KeyboardInterrupt(), 130, "interrupted; finished work is kept"),
    (StageFailed("2 shard(s) failed (re-run to resume)"), 1, "sptf simulate: failed: 2 shard(s) failed (re-run to resume)"),
])
def test_the_cli_turns_os_errors_and_ctrl_c_into_one_line(monkeypatch, capsys, raised, code, said):
    import sptf_ray.physics.cli as simulate_cli
    from sptf_ray.cli import main

    def fail(args):
        raise raised

    monkeypatch.setattr(simulate_cli, "run", fail)
    assert main(["simulate", "--example", "--out", "x"]) == code
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


def test_sptf_version_names_the_installed_package(capsys):
    from importlib.metadata import version

    from sptf_ray.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"sptf {version('sptf-ray')}"
