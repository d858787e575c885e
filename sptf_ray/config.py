"""Typed configs: dataclasses loaded from dicts or YAML/JSON files (any storage URI).

`load_config(cls, source)` checks every key and type against the dataclass annotations
(nested dataclasses, Optional, list/tuple/dict, Literal), rejects unknown keys by name,
then calls `validate()` when the class defines it. Configs are saved beside the outputs
they produced (`save_config`) and identified by `config_hash`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import types
import typing
from pathlib import PurePath
from typing import Any, TypeVar

import yaml

from sptf_ray import storage

T = TypeVar("T")

__all__ = ["load_config", "config_to_dict", "save_config", "config_hash", "parse_yaml"]


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads 1e-4 as a float (YAML 1.1 insists on a dot: 1.0e-4)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass


# --------------------------------------------------------------------------- coercion
def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """`value` checked (and gently converted: int->float, list->tuple) against type `tp`."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ValueError:
                continue
        raise ValueError(f"{where}: {value!r} matches none of {_type_name(tp)}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ValueError(f"{where}: {value!r} is not one of {list(args)}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return _build(tp, value, where)
    if origin in (list, typing.List) or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        item = args[0] if args else Any
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (tuple, typing.Tuple) or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        if not args:
            return tuple(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin in (dict, typing.Dict) or tp is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(value).__name__}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, f"{where}.<key>"): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{where}: expected a string, got {value!r}")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if issubclass(tp, PurePath) and isinstance(value, str):
            return tp(value)
        raise ValueError(f"{where}: expected {tp.__name__}, got {type(value).__name__}")
    return value  # unsupported annotation: accept as is rather than guess


def _build(cls: type[T], data: dict, where: str = "") -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    prefix = f"{where}." if where else ""
    if unknown:
        raise ValueError(
            f"unknown config key(s) for {cls.__name__}: {', '.join(prefix + k for k in unknown)}"
            f" (known: {', '.join(sorted(fields))})"
        )
    missing = [
        name
        for name, f in fields.items()
        if name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise ValueError(f"missing config key(s) for {cls.__name__}: {', '.join(prefix + k for k in missing)}")
    kwargs = {name: _coerce(value, hints[name], prefix + name) for name, value in data.items()}
    return cls(**kwargs)


def _validate_tree(obj: Any) -> None:
    """Call validate() on nested dataclasses first, then on the object itself."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            _validate_tree(value)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()


# --------------------------------------------------------------------------- public API
def load_config(cls: type[T], source) -> T:
    """An instance of dataclass `cls` from an instance, a dict, or a YAML/JSON path or URI."""
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"load_config needs a dataclass type, got {cls!r}")
    if isinstance(source, cls):
        # Round-trip so an instance built by hand gets the same type checks as a file.
        obj = _build(cls, config_to_dict(source))
    elif isinstance(source, dict):
        obj = _build(cls, source)
    elif isinstance(source, (str, os.PathLike)):
        text = storage.read_text(source)
        if os.fspath(source).lower().endswith(".json"):
            data = json.loads(text)
        else:
            try:
                data = parse_yaml(text)
            except yaml.YAMLError as exc:
                raise ValueError(f"config {source} is not valid YAML: {exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValueError(f"config {source} must hold a mapping, got {type(data).__name__}")
        obj = _build(cls, data)
    else:
        raise TypeError(f"cannot load a {cls.__name__} config from {type(source).__name__}")
    _validate_tree(obj)
    return obj


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [_jsonable(v) for v in items]
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"config value {value!r} is not JSON-safe")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalar
        return _jsonable(value.item())
    raise ValueError(f"config value of type {type(value).__name__} is not JSON-safe")


def config_to_dict(obj) -> dict:
    """A JSON-safe dict of a (nested) dataclass config."""
    if not (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        raise TypeError(f"config_to_dict needs a dataclass instance, got {type(obj).__name__}")
    return _jsonable(obj)


def save_config(obj, uri) -> str:
    """Write the config as YAML, atomically; returns `uri`."""
    text = yaml.safe_dump(config_to_dict(obj), sort_keys=False, default_flow_style=False)
    return storage.atomic_write_text(uri, text)


def config_hash(obj) -> str:
    """Stable sha256 hex of the config's canonical JSON (key order does not matter)."""
    canonical = json.dumps(config_to_dict(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
