"""One way of mapping command-line flags onto a typed config.

Each CLI declares its flags with `dest` = the config field and `default=None`, so a flag the
user did not give is None; `given` keeps the others, and `config_from_args` applies them on top
of the config's defaults (or a YAML file's values, or a preset): the config class stays the one
place that holds defaults. A help text shows a default with `with_default`, which reads it from
the config class, so the help cannot drift from it either.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def given(args: argparse.Namespace | Mapping[str, Any], fields: Any = None) -> dict[str, Any]:
    """The flags that were given (not None), restricted to `fields` (names or a dataclass)."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    if fields is not None:
        names = (
            {f.name for f in dataclasses.fields(fields)}
            if dataclasses.is_dataclass(fields)
            else set(fields)
        )
        values = {k: v for k, v in values.items() if k in names}
    return {k: v for k, v in values.items() if v is not None}


def config_from_args(
    cls: type[T], args: argparse.Namespace | Mapping[str, Any], base: T | None = None, **fixed: Any
) -> T:
    """`base` (default: `cls(**fixed)`) with every given flag that names a field of `cls`."""
    overrides = given(args, cls)
    if base is None:
        return cls(**{**fixed, **overrides})
    return dataclasses.replace(base, **{**fixed, **overrides})


def field_default(cls: Any, name: str) -> Any:
    """The default of dataclass `cls`'s field `name` (its `default_factory` called), or of the
    parameter `name` of a function `cls`."""
    if not dataclasses.is_dataclass(cls):
        param = inspect.signature(cls).parameters.get(name)
        if param is None:
            raise ValueError(f"{cls.__name__} has no parameter {name!r}")
        if param.default is inspect.Parameter.empty:
            raise ValueError(f"{cls.__name__}({name}) has no default")
        return param.default
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise ValueError(f"{cls.__name__}.{name} has no default")
    raise ValueError(f"{cls.__name__} has no field {name!r}")


def with_default(cls: Any, name: str, text: str = "") -> str:
    """`text` and "(default: X)", X the default of `cls.name` (`field_default`); lists as
    comma-separated values."""
    value = field_default(cls, name)
    if isinstance(value, list | tuple):
        value = ",".join(map(str, value))
    return f"{text} (default: {value})" if text else f"default: {value}"


def comma_list(value: str) -> list[str]:
    """An argparse `type` for comma-separated values: "a, b," -> ["a", "b"]."""
    return [item.strip() for item in value.split(",") if item.strip()]
