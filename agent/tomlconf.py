"""Config files for both daemons: TOML, overlaid by `OBSTOP_SECTION__KEY` environment variables, validated.

Only the keys a model declares can be set from the environment; any other `OBSTOP_*` variable (the ops
client's `OBSTOP_URL`, `OBSTOP_AGENT_CONFIG`, ...) is ignored. Relative paths in a file are relative to
that file (`ConfigPath`).
"""

from __future__ import annotations

import json
import os
import ssl
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args
from urllib.parse import urlparse

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


def _mqtt_url(v: str) -> str:
    u = urlparse(v)
    try:
        port = u.port
    except ValueError:
        port = -1
    if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not u.hostname or port == -1:
        raise ValueError(f"expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], not {v!r}")
    return v


MqttUrl = Annotated[str, AfterValidator(_mqtt_url)]
"""A broker URL: mqtt://HOST[:PORT] or mqtts://HOST[:PORT]."""


def broker_urls(url: str | None, urls: list[str]) -> list[str]:
    """The brokers a daemon tries in turn ([mqtt] urls, a cluster's nodes): `url` first when it is set
    and not among them (`url` alone is a list of one)."""
    return ([url] if url and url not in urls else []) + list(urls)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (config errors are one line each)."""
    return " ".join(str(exc).split())[:300] or type(exc).__name__


Fail = Callable[[str, str], Exception]  # (key, what is wrong) -> the error to raise


def check_readable(path: Path | None, key: str, fail: Fail) -> None:
    """A file the daemon will need later must be readable now, not when it is first used."""
    if path is None:
        return
    try:
        with open(path, "rb") as f:
            f.read(1)
    except FileNotFoundError:
        raise fail(key, f"{path}: no such file") from None
    except OSError as exc:
        raise fail(key, f"cannot read {path}: {one_line(exc)}") from None


def check_ca_file(path: Path | None, key: str, fail: Fail) -> None:
    check_readable(path, key, fail)
    if path is not None:
        try:
            ssl.create_default_context(cafile=str(path))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise fail(key, f"{path} holds no usable CA certificate: {one_line(exc)}") from None


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
    """The first errors of a validation, on one line: `key.path: what is wrong; ...`."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(x) for x in err["loc"]) or "(top)"
        what = " ".join(str(err["msg"]).split()).removeprefix("Value error, ")
        parts.append(f"{where}: {what}")
    return "; ".join(parts)


def load(model: type[M], path: Path, error: type[Exception], env: Mapping[str, str] | None = None) -> M:
    """Read path as TOML, overlay the environment, validate; errors name the file and the field."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise error(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise error(f"{path}: {one_line(exc)}") from exc
    data = merge(data, env_overrides(model, os.environ if env is None else env))
    try:
        return model.model_validate(data, context={"base_dir": path.parent.resolve()})
    except ValidationError as exc:
        raise error(f"{path}: {describe(exc)}") from exc
