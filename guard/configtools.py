"""Small typed readers for TOML configuration that collect every error instead of stopping.

Each section parser takes the raw mapping, a :class:`Problems` collector and a
dotted path, and returns a frozen settings object with documented defaults. Never
validate security settings with ``assert`` (stripped under ``python -O``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Problems:
    """Collects configuration errors as ``path: message`` lines."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}" if path else message)

    def __bool__(self) -> bool:
        return bool(self.items)


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def table(raw: Mapping[str, Any], key: str, path: str, problems: Problems) -> Mapping[str, Any]:
    """A sub-table (empty when absent; an error when present but not a table)."""
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        problems.add(join(path, key), "must be a table")
        return {}
    return value


def get(raw: Mapping[str, Any], key: str, kind: type[T] | tuple[type, ...], default: T, path: str,
        problems: Problems) -> T:
    """Read ``raw[key]`` checking its type; ``bool`` never passes for ``int``."""
    if key not in raw:
        return default
    value = raw[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        problems.add(join(path, key), f"must be {_describe(kinds)}, not a boolean")
        return default
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # type: ignore[return-value]
    if not isinstance(value, kinds):
        problems.add(join(path, key), f"must be {_describe(kinds)}")
        return default
    return value  # type: ignore[return-value]


def positive(raw: Mapping[str, Any], key: str, kind: type[T], default: T, path: str, problems: Problems,
             allow_zero: bool = False) -> T:
    """A positive number (or zero when ``allow_zero``)."""
    value = get(raw, key, kind, default, path, problems)
    if isinstance(value, int | float) and (value < 0 or (value == 0 and not allow_zero)):
        problems.add(join(path, key), "must be positive" if not allow_zero else "must not be negative")
        return default
    return value


def str_list(raw: Mapping[str, Any], key: str, default: tuple[str, ...], path: str,
             problems: Problems) -> tuple[str, ...]:
    if key not in raw:
        return default
    value = raw[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add(join(path, key), "must be a list of strings")
        return default
    return tuple(value)


def str_map(raw: Mapping[str, Any], key: str, path: str, problems: Problems,
            expand_env: bool = True) -> dict[str, str]:
    """A table of string values, with ``${VAR}`` references expanded from the environment."""
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        problems.add(join(path, key), "must be a table of strings")
        return {}
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(v, str):
            problems.add(join(join(path, key), str(k)), "must be a string")
            continue
        out[str(k)] = expand(v, join(join(path, key), str(k)), problems) if expand_env else v
    return out


def expand(value: str, path: str, problems: Problems, environ: Mapping[str, str] | None = None) -> str:
    """Replace ``${VAR}`` with the environment's value; a missing variable is an error.

    Lets secrets (upstream credentials, keys) live in the environment instead of the file.
    """
    env = os.environ if environ is None else environ

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            problems.add(path, f"environment variable {name} is not set")
            return ""
        return env[name]

    return _ENV_REF.sub(sub, value)


def choice(raw: Mapping[str, Any], key: str, options: tuple[str, ...], default: str, path: str,
           problems: Problems) -> str:
    value = get(raw, key, str, default, path, problems)
    if value not in options:
        problems.add(join(path, key), f"must be one of {', '.join(options)}")
        return default
    return value


def resolve_path(base_dir: Path, value: str) -> Path:
    """A path from config, relative to the config file's directory."""
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else (base_dir / p)


def unknown_keys(raw: Mapping[str, Any], known: set[str], path: str, problems: Problems) -> None:
    """Report keys that are not part of the schema (typos in security settings must not pass silently)."""
    for key in raw:
        if key not in known:
            problems.add(join(path, str(key)), "unknown setting")


def _describe(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)
