"""`--set key=value` on the command line: dotted keys into the recipe's raw mapping, values read
as YAML (3 is a number, true a boolean, [1, 2] a list, cosine text), then validated by the recipe
schema like any value written in the file, with the same messages.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import yaml

from .errors import TkError


def parse_set(item: str) -> tuple[list[str], Any]:
    key, eq, text = item.partition("=")
    parts = key.strip().split(".")
    if not eq or not all(p.strip() for p in parts):
        raise TkError(f"--set: expected key=value with a dotted key, e.g. --set train.epochs=3 (got {item!r})")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text  # a value YAML cannot read is text, as a quoted string in the file would be
    except RecursionError:
        raise TkError(f"--set {key.strip()}: the value is nested hundreds of levels deep; give a plain value") from None
    return [p.strip() for p in parts], value


def apply_overrides(raw: dict[str, Any], items: Sequence[str]) -> dict[str, Any]:
    """A copy of raw with every `key=value` set; sections on the way are created as needed."""
    out = copy.deepcopy(raw)
    for item in items:
        parts, value = parse_set(item)
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise TkError(f"--set {item}: {where} is a value ({child!r}), not a section")
            node = child
        node[parts[-1]] = value
    return out
