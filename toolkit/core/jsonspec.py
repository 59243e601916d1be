"""Reading JSON that a person may have edited: one bounded read, and a small vocabulary of checks.

A run folder or a bundle is plain files; anyone can edit them, copy one in from elsewhere, or put a
folder or a symbolic link in a file's place. read_json_file reads one file defensively (a regular
file only, a size cap, UTF-8, strict JSON: no NaN/Infinity, no nesting bomb). A spec is a function
`(value, where) -> value` that raises Invalid(where, problem); specs are built from the helpers
below and combined in core/schemas.py, one per file. validate() turns Invalid into one TkError
naming the file, the key and the fix. Standard library only (the device path imports it).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from .errors import TkError

Spec = Callable[[Any, str], Any]


class Invalid(Exception):
    """A value that breaks its spec: where (a key path like rows[3].p50_ms) and what is wrong."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")
        self.where, self.problem = where, problem


def read_json_file(path: Path, max_bytes: int, fix: str) -> Any:
    """The parsed content of a regular file of at most max_bytes; anything else is one TkError."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise TkError(f"{path}: not found; {fix}") from None
    if stat.S_ISLNK(info.st_mode):
        raise TkError(
            f"{path}: a symbolic link; tk reads run and bundle files only as regular files in their "
            f"folder: put the file itself there ({fix})"
        )
    if stat.S_ISDIR(info.st_mode):
        raise TkError(f"{path}: a folder where a JSON file belongs; remove it ({fix})")
    if not stat.S_ISREG(info.st_mode):
        raise TkError(f"{path}: not a regular file; {fix}")
    if info.st_size > max_bytes:
        raise TkError(f"{path}: {info.st_size} bytes, more than such a file may hold ({max_bytes} bytes); {fix}")
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew after the stat
        raise TkError(f"{path}: more than {max_bytes} bytes; {fix}")
    if not data.strip():
        raise TkError(f"{path}: empty; {fix}")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise TkError(f"{path}: not UTF-8 text (byte {exc.start}); {fix}") from None
    except json.JSONDecodeError as exc:
        raise TkError(f"{path}: not valid JSON ({exc}); {fix}") from None
    except Invalid as exc:
        raise TkError(f"{path}: {exc.problem}; {fix}") from None
    except RecursionError:
        raise TkError(f"{path}: nested too deeply to be a tk file; {fix}") from None


def _no_constant(name: str) -> Any:
    raise Invalid("", f"holds {name}, which strict JSON does not allow (tk writes null for it)")


def validate(value: Any, spec: Spec, path: Path, fix: str) -> Any:
    try:
        return spec(value, "")
    except Invalid as exc:
        where = exc.where or "the file"
        raise TkError(f"{path}: {where}: {exc.problem}; {fix}") from None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


# --------------------------------------------------------------------------- specs


def text(max_len: int = 1024, nonempty: bool = False, pattern: Optional[str] = None, what: str = "") -> Spec:
    """A string of at most max_len characters with no control characters (newlines included)."""
    compiled = re.compile(pattern) if pattern else None

    def check(value: Any, where: str) -> Any:
        if not isinstance(value, str):
            raise Invalid(where, f"must be text (got {_kind(value)} {_shown(value)})")
        if len(value) > max_len:
            raise Invalid(where, f"text longer than {max_len} characters")
        if nonempty and not value.strip():
            raise Invalid(where, "must not be empty")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise Invalid(where, f"holds a control character (newline, tab, ...): {_shown(value)}")
        if compiled is not None and not compiled.fullmatch(value):
            raise Invalid(where, f"must be {what or pattern} (got {_shown(value)})")
        return value

    return check


def free_text(max_len: int = 4096) -> Spec:
    """A string that may hold newlines (notes, messages); still capped."""

    def check(value: Any, where: str) -> Any:
        if not isinstance(value, str):
            raise Invalid(where, f"must be text (got {_kind(value)} {_shown(value)})")
        if len(value) > max_len:
            raise Invalid(where, f"text longer than {max_len} characters")
        return value

    return check


SHA256 = text(64, pattern="[0-9a-f]{64}", what="a sha256 (64 hex digits)")


def integer(lo: Optional[int] = None, hi: Optional[int] = None) -> Spec:
    def check(value: Any, where: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(where, f"must be a whole number (got {_kind(value)} {_shown(value)})")
        _in_range(value, lo, hi, where)
        return value

    return check


def number(lo: Optional[float] = None, hi: Optional[float] = None) -> Spec:
    def check(value: Any, where: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(where, f"must be a number (got {_kind(value)} {_shown(value)})")
        if not math.isfinite(value):  # 1e999 parses as inf
            raise Invalid(where, f"must be a finite number (got {value})")
        _in_range(value, lo, hi, where)
        return value

    return check


def _in_range(value: float, lo: Optional[float], hi: Optional[float], where: str) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = (
            f"between {lo} and {hi}"
            if lo is not None and hi is not None
            else f">= {lo}"
            if lo is not None
            else f"<= {hi}"
        )
        raise Invalid(where, f"must be {bounds} (got {value})")


def boolean(value: Any, where: str) -> Any:
    if not isinstance(value, bool):
        raise Invalid(where, f"must be true or false (got {_kind(value)} {_shown(value)})")
    return value


def anything(value: Any, where: str) -> Any:
    """Any JSON value (the bounded read already capped its size and depth)."""
    return value


def nullable(spec: Spec) -> Spec:
    def check(value: Any, where: str) -> Any:
        return None if value is None else spec(value, where)

    return check


def one_of(*allowed: Any) -> Spec:
    def check(value: Any, where: str) -> Any:
        if isinstance(value, bool) or value not in allowed:
            raise Invalid(where, f"must be one of {', '.join(map(repr, allowed))} (got {_shown(value)})")
        return value

    return check


def seq(item: Spec, max_len: int, min_len: int = 0) -> Spec:
    def check(value: Any, where: str) -> Any:
        if not isinstance(value, list):
            raise Invalid(where, f"must be a list (got {_kind(value)} {_shown(value)})")
        if not min_len <= len(value) <= max_len:
            raise Invalid(where, f"must hold {min_len} to {max_len} items (got {len(value)})")
        for i, v in enumerate(value):
            item(v, f"{where}[{i}]")
        return value

    return check


def mapping(value_spec: Spec, max_len: int, key: Optional[Spec] = None, what: str = "") -> Spec:
    """An object used as a dictionary (any keys, each value to value_spec)."""

    def check(value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            raise Invalid(where, f"must map {what or 'names to values'} (got {_kind(value)})")
        if len(value) > max_len:
            raise Invalid(where, f"holds {len(value)} entries, more than {max_len}")
        for k, v in value.items():
            if key is not None:
                key(k, f"{where}[{k!r}]")
            value_spec(v, f"{where}[{k!r}]")
        return value

    return check


def obj(required: Optional[Mapping[str, Spec]] = None, optional: Optional[Mapping[str, Spec]] = None) -> Spec:
    """An object with these keys; other keys pass (a newer tk may add some)."""
    required, optional = dict(required or {}), dict(optional or {})

    def check(value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            raise Invalid(where, f"must be an object (got {_kind(value)} {_shown(value)})")
        for name, spec in required.items():
            if name not in value:
                raise Invalid(_join(where, name), "missing")
            spec(value[name], _join(where, name))
        for name, spec in optional.items():
            if name in value:
                spec(value[name], _join(where, name))
        return value

    return check


def file_name(value: Any, where: str) -> Any:
    """A plain file or folder name inside its folder: no path separators, not '.' or '..'."""
    text(255, nonempty=True)(value, where)
    if "/" in value or "\\" in value or value in (".", "..") or len(value.encode("utf-8")) > 255:
        raise Invalid(where, f"must be a plain file name in the folder (got {_shown(value)})")
    return value
