"""Typed configuration: frozen dataclasses filled from YAML, overridden from the command line.

``from_dict`` checks every key and value against the dataclass's type hints and says
what is wrong and what is allowed; ``to_dict`` gives plain JSON/YAML data back;
``config_hash`` fingerprints a config so a run directory can tell whether it was made by it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from puzzlecam.errors import ConfigError

__all__ = [
    "from_dict",
    "to_dict",
    "fingerprint_data",
    "config_hash",
    "differences",
    "require",
    "require_at_least",
    "NOT_FINGERPRINTED",
    "load_yaml",
    "apply_overrides",
    "dump_yaml",
]

T = TypeVar("T")


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin is Literal:
        allowed = get_args(hint)
        # YAML 1.1 reads a bare on/off (yes/no) as a bool: `--set train_cls.loop.amp=off`
        # must mean the choice "off", not be refused as False
        if isinstance(value, bool) and ("on" if value else "off") in allowed:
            value = "on" if value else "off"
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{where}: a value is required")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {options}"
        )
    if dataclasses.is_dataclass(hint):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{where}: expected a mapping of {hint.__name__} settings, got {value!r}"
            )
        return from_dict(hint, value, where)
    if origin is tuple:
        args = get_args(hint)
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(item, args[0], f"{where}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(
            _convert(item, arg, f"{where}[{i}]")
            for i, (item, arg) in enumerate(zip(value, args, strict=True))
        )
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            with contextlib.suppress(ValueError):
                number = float(value.strip())
                if math.isfinite(number):
                    return number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported config type {hint!r}")


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; missing keys keep their defaults."""
    hints = get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown setting(s) {[prefix + key for key in unknown]}; "
            f"valid keys{' of ' + where if where else ''}: {sorted(fields)}"
        )
    values = {}
    for name, value in data.items():
        path = f"{where}.{name}" if where else name
        values[name] = _convert(value, hints[name], path)
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:  # ConfigError is a ValueError
        message = str(error)
        # checks in __post_init__ start with the setting's name: give it its full path
        if re.match(rf"({'|'.join(map(re.escape, fields))})[.:]", message):
            message = f"{where}.{message}" if where else message
        else:
            message = f"{where or cls.__name__}: {message}"
        raise ConfigError(message) from error


def require(ok: bool, name: str, problem: str) -> None:
    """Raise ConfigError("``name``: ``problem``") unless ``ok``: for ``__post_init__``
    checks, which name the setting relative to their dataclass (``from_dict`` adds the
    section). Write ``ok`` as what a valid value satisfies, so that NaN fails it."""
    if not ok:
        raise ConfigError(f"{name}: {problem}")


def require_at_least(value: int, name: str, least: int) -> None:
    """``require`` for a count: ``value`` must be at least ``least``."""
    require(value >= least, name, f"must be at least {least}, got {value}")


NOT_FINGERPRINTED = {"fingerprint": False}
"""``field(metadata=NOT_FINGERPRINTED)``: a setting that changes no output (where a run
executes, when it gives up); ``config_hash`` leaves it out, so changing it (or adding it
to a config class) keeps every run directory and stage fingerprint valid."""


FINGERPRINTED_UNLESS_DEFAULT = {"fingerprint": "unless_default"}
"""``field(metadata=FINGERPRINTED_UNLESS_DEFAULT)``: an option added after runs existed,
whose default changes nothing; ``config_hash`` counts it only when it is set to something
else, so adding it keeps every finished stage of those runs valid."""


FINGERPRINT_POLICY = 3
"""The rule of what a fingerprint holds. 2 (2026-12-04): the execution settings
(``EXECUTION``) left it. 3: a section's ``fingerprint_form`` (below) applies.
``config_hash(..., policy=N)`` gives the fingerprints of runs made under an older rule, so
that those runs are recognised and kept (``pipeline.runner``)."""


EXECUTION = {"fingerprint": False, "fingerprinted_until_policy": 1}
"""``field(metadata=EXECUTION)``: how a stage runs, not what it makes (data-loading workers,
logging, memory layout, the batching of inference, how many pictures are drawn): it never
binds a run directory nor re-runs a stage. Fingerprinted under policy 1."""


def _fingerprinted(config: Any, field: dataclasses.Field, policy: int) -> bool:
    if policy <= field.metadata.get("fingerprinted_until_policy", 0):
        return True  # the rule of an older policy, to recognise its runs
    mode = field.metadata.get("fingerprint", True)
    if mode == FINGERPRINTED_UNLESS_DEFAULT["fingerprint"]:
        return getattr(config, field.name) != _default(field)
    return bool(mode)


def _default(field: dataclasses.Field) -> Any:
    """A field's default value, made by its ``default_factory`` when it has one."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def to_dict(config: Any) -> Any:
    """Plain data (dicts, lists, scalars) from a dataclass config."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return {str(key): to_dict(value) for key, value in config.items()}
    if isinstance(config, (tuple, list)):
        return [to_dict(item) for item in config]
    if isinstance(config, Path):
        return str(config)
    return config


def fingerprint_data(config: Any, policy: int = FINGERPRINT_POLICY) -> Any:
    """``to_dict(config)`` without the fields marked ``NOT_FINGERPRINTED`` or ``EXECUTION``,
    nor those marked ``FINGERPRINTED_UNLESS_DEFAULT`` that hold their default; ``policy``:
    as an older ``FINGERPRINT_POLICY`` had it.

    A section whose settings can say the same thing two ways (e.g. a batch split into
    micro-batches where the maths is the same) defines ``fingerprint_form()``: the one way
    its fingerprint is taken in (policy 3 on)."""
    if dataclasses.is_dataclass(config) and policy >= 3 and hasattr(config, "fingerprint_form"):
        config = config.fingerprint_form()
    if dataclasses.is_dataclass(config):
        return {
            f.name: fingerprint_data(getattr(config, f.name), policy)
            for f in dataclasses.fields(config)
            if _fingerprinted(config, f, policy)
        }
    if isinstance(config, Mapping):
        return {str(key): fingerprint_data(value, policy) for key, value in config.items()}
    if isinstance(config, (tuple, list)):
        return [fingerprint_data(item, policy) for item in config]
    return to_dict(config)


def config_hash(config: Any, policy: int = FINGERPRINT_POLICY) -> str:
    """Short, stable fingerprint of a config (or of any plain data): its
    ``fingerprint_data`` under ``policy``."""
    text = json.dumps(fingerprint_data(config, policy), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``"a.b: old -> new"`` for every setting that differs between two nested dicts (as
    ``to_dict`` makes them), sorted by name: what a message says changed."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for key in sorted(set(old) | set(new)):
            out += differences(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text; save the config with the UTF-8 encoding"
        ) from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML ({' '.join(str(error).split())})") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    return data


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (value parsed as YAML) to nested config data."""
    result = _deep_copy(data)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {override!r} must look like section.key=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise ConfigError(f"override {override!r}: invalid value ({error})") from error
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {override!r}: '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return result


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}
