"""Config files for both daemons: TOML, overlaid by `OBSTOP_SECTION__KEY` environment variables, validated.

Only the keys a model declares can be set from the environment; any other `OBSTOP_*` variable (the ops
client's `OBSTOP_URL`, `OBSTOP_AGENT_CONFIG`, ...) is ignored. Relative paths in a file are relative to
that file (`ConfigPath`).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo

M = TypeVar("M", bound=BaseModel)
PREFIX = "OBSTOP_"


class Section(BaseModel):
    """A table of a config file: an unknown key is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


def resolve(base: Path, value: str | Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def base_dir(info: ValidationInfo) -> Path:
    """The folder of the file being validated (set by load())."""
    return Path((info.context or {}).get("base_dir", "."))


def _relative_to_file(value: Path, info: ValidationInfo) -> Path:
    return resolve(base_dir(info), value)


ConfigPath = Annotated[Path, AfterValidator(_relative_to_file)]
"""A path in a config file: relative paths are relative to the file itself."""


def _section_type(annotation: Any) -> type[BaseModel] | None:
    """The model of a nested table (`mqtt: MqttConfig`), or None for a leaf value."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate if candidate is annotation else None
    return None


def env_names(model: type[BaseModel], path: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Every environment variable the model declares: OBSTOP_STORE__URL -> ("store", "url")."""
    out: dict[str, tuple[str, ...]] = {}
    for name, field in model.model_fields.items():
        keys = (*path, name)
        section = _section_type(field.annotation)
        if section is not None:
            out.update(env_names(section, keys))
        else:
            out[PREFIX + "__".join(k.upper() for k in keys)] = keys
    return out


def _value(raw: str) -> Any:
    # lists and tables as JSON; scalars as text, which pydantic converts to the field's type
    if raw.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def env_overrides(model: type[BaseModel], env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, keys in env_names(model).items():
        if name in env:
            tree = out
            for key in keys[:-1]:
                tree = tree.setdefault(key, {})
            tree[keys[-1]] = _value(env[name])
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
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise error(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise error(f"{path}: {exc}") from exc
    data = merge(data, env_overrides(model, os.environ if env is None else env))
    try:
        return model.model_validate(data, context={"base_dir": path.parent.resolve()})
    except ValidationError as exc:
        raise error(f"{path}: {describe(exc)}") from exc
