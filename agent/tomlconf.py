"""Loading TOML config files with `OBSTOP_...` environment overrides and file-relative paths."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def _set(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree[keys[-1]] = value


def env_overrides(env: Mapping[str, str], prefix: str = "OBSTOP_") -> dict[str, Any]:
    """OBSTOP_STORE__URL=... -> {"store": {"url": ...}}; values that parse as JSON are taken as JSON."""
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(prefix) or name == prefix + "CONFIG":
            continue
        keys = [k.lower() for k in name[len(prefix) :].split("__") if k]
        if not keys:
            continue
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        _set(out, keys, value)
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(x) for x in err["loc"]) or "(top)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def load(model: type[M], path: Path, error: type[Exception], env: Mapping[str, str] | None = None) -> M:
    """Read path as TOML, overlay the environment, validate; errors name the file and the field."""
    ConfigError = error
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    data = merge(data, env_overrides(os.environ if env is None else env))
    try:
        return model.model_validate(data, context={"base_dir": path.parent.resolve()})
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe(exc)}") from exc


def resolve(base: Path, value: str | Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)
