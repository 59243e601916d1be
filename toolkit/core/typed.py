"""Plain data (a YAML recipe, a JSON manifest's section) into a frozen dataclass, by its type hints.

Unknown keys (listing the allowed ones, with a typo suggestion), wrong types and impossible values
fail with one line naming the key path and the value, e.g. `train.epochs: must be a whole number
(got 'x')`. Apart from recipe.py, which reads YAML, so the device path can check a bundle's
sections (core/sections.py) without importing the recipe machinery.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal

from .errors import TkError, suggest


def build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise TkError(f"{path or 'recipe'}: must be a mapping (got {show(data)})")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source_path"}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        where = f"{path}.{key}" if path else str(key)
        raise TkError(f"{where}: unknown key{suggest(str(key), fields)}; allowed keys: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        where = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = coerce(hints[name], data[name], where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TkError(f"{where}: required key is missing")
    return cls(**kwargs)


def coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(inner[0], value, where)
    if dataclasses.is_dataclass(tp):
        return build(tp, value if value is not None else {}, where)
    if origin is Literal:
        if value not in args:
            raise TkError(f"{where}: must be one of {', '.join(map(str, args))} (got {show(value)})")
        return value
    if origin is tuple:
        items = value if isinstance(value, list) else [value]
        return tuple(coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(items))
    if origin is dict:
        if not isinstance(value, dict):
            raise TkError(f"{where}: must be a mapping (got {show(value)})")
        return {str(k): coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise TkError(f"{where}: must be true or false (got {show(value)})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TkError(f"{where}: must be a whole number (got {show(value)})")
        return value
    if tp is float:
        number = value
        if isinstance(value, str):
            try:  # YAML 1.1 reads "1e-5" as a string
                number = float(value)
            except ValueError:
                pass
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise TkError(f"{where}: must be a number (got {show(value)})")
        if not math.isfinite(number):  # .nan/.inf would pass every range check (nan < x is False)
            raise TkError(f"{where}: must be a finite number (got {show(value)})")
        return float(number)
    if tp is str:
        if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
            raise TkError(f"{where}: must be text (got {show(value)})")
        return str(value)
    raise AssertionError(f"unsupported recipe type {tp} at {where}")  # a bug in the schema


def show(value: Any) -> str:
    return repr(value) if not isinstance(value, tuple) else repr(list(value))
