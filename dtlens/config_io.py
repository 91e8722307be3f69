"""One serialiser and one set of validators for dtlens' config dataclasses.

dtlens' configs (:class:`~dtlens.model.config.DTConfig`,
:class:`~dtlens.training.config.TrainConfig`, :class:`~dtlens.training.ppo_config.PPOConfig`,
:class:`~dtlens.data.agents.lstm.LSTMAgentConfig`, :class:`~dtlens.report.config.ReportConfig`)
are frozen dataclasses that inherit :class:`ConfigIO`: ``to_dict`` / ``from_dict`` come from
here (JSON-ready dicts, unknown or missing fields named), their ``__post_init__`` checks
use the ``check_*`` functions (one message format: ``Class.field=value must be ...``), and
:func:`field_docs` reads each field's help from the class docstring's ``Args:`` or
``Attributes:`` section, which ``dtlens <command> --help`` shows (:mod:`dtlens.cli.flags`).

This module imports only the standard library (the command line builds its parsers from
the configs without importing torch).

Examples:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Box(ConfigIO):
    ...     '''A box.
    ...
    ...     Args:
    ...         side: edge length, in cells.
    ...         tags: free labels.
    ...     '''
    ...     side: int = 1
    ...     tags: tuple[str, ...] = ()
    ...     def __post_init__(self):
    ...         check_int(self, "side", minimum=1)
    >>> Box(side=2, tags=("a",)).to_dict()
    {'side': 2, 'tags': ['a']}
    >>> Box.from_dict({"side": 3, "tags": ["b"]})
    Box(side=3, tags=('b',))
    >>> Box(side=0)
    Traceback (most recent call last):
    ...
    dtlens.errors.ConfigError: Box.side=0 must be a positive int.
    >>> field_docs(Box)
    {'side': 'edge length, in cells.', 'tags': 'free labels.'}
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any, TypeVar

from dtlens.errors import ConfigError

__all__ = [
    "ConfigIO",
    "check",
    "check_bool",
    "check_choice",
    "check_int",
    "check_number",
    "config_from_dict",
    "config_to_dict",
    "field_docs",
    "field_types",
    "is_int",
    "is_real",
    "jsonable",
    "required_fields",
    "union_args",
]

C = TypeVar("C")


class ConfigIO:
    """Mixin of a config dataclass: ``to_dict`` / ``from_dict`` through this module.

    A class may set ``_json_omit_defaults`` (field names) to leave those fields out of
    ``to_dict`` while they hold their defaults (fields added after files were saved,
    so that older files stay byte-identical and older dtlens versions still read them).
    """

    _json_omit_defaults: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists, nested configs dicts)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Inverse of :meth:`to_dict`; unknown or missing fields raise a ConfigError."""
        return config_from_dict(cls, data)


# ------------------------------------------------------------------ serialiser
def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-ready dict, fields in declaration order.

    Nested dataclasses become dicts (through their own ``to_dict``), tuples and lists
    lists, paths strings; fields named in ``_json_omit_defaults`` are left out while
    they hold their default.
    """
    omit = getattr(config, "_json_omit_defaults", ())
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in omit and value == f.default:
            continue
        out[f.name] = jsonable(value)
    return out


def jsonable(value: Any) -> Any:
    """``value`` with dataclasses as dicts, tuples as lists and paths as strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return to_dict() if callable(to_dict) else config_to_dict(value)
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    return value


def config_from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Build ``cls`` from a dict of its fields (the output of :func:`config_to_dict`).

    JSON lists become tuples where the field is a tuple; nested configs may stay dicts
    (the class's ``__post_init__`` builds them).

    Raises:
        ConfigError: ``data`` is not a dict, has keys that are not fields (named, with
            the known fields), or lacks a field without a default (named); or a value
            is invalid (the class's own check).
    """
    name = cls.__name__
    if not isinstance(data, Mapping):
        raise ConfigError(f"a {name} must be a dict of its fields, got {type(data).__name__}.")
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown {name} fields {unknown}; known fields: {sorted(known)}.")
    missing = [f for f in required_fields(cls) if f not in data]
    if missing:
        raise ConfigError(f"{name} needs the fields {missing} (they have no default).")
    hints = field_types(cls)
    values = {k: _from_json(hints.get(k), v) for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as err:  # a value of a type the class's checks did not expect
        raise ConfigError(f"{name}: {err}") from err


def _from_json(annotation: Any, value: Any) -> Any:
    if isinstance(value, list) and _is_tuple_type(annotation):
        return tuple(value)
    return value


def _is_tuple_type(annotation: Any) -> bool:
    if annotation is None:
        return False
    if typing.get_origin(annotation) is tuple or annotation is tuple:
        return True
    return any(_is_tuple_type(arg) for arg in union_args(annotation))


def union_args(annotation: Any) -> tuple[Any, ...]:
    """The members of a ``X | Y`` / ``Optional[X]`` annotation (empty for any other type).

    Example:
        >>> union_args(int | None)
        (<class 'int'>, <class 'NoneType'>)
    """
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return ()


def required_fields(cls: type) -> list[str]:
    """Names of the fields without a default (in declaration order)."""
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """``{field: resolved annotation}`` of a dataclass (string annotations evaluated)."""
    module = sys.modules.get(cls.__module__)
    hints = typing.get_type_hints(cls, vars(module) if module else None)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


# --------------------------------------------------------------------- docs
_SECTION = re.compile(r"^(\s*)(Args|Arguments|Attributes|Parameters):\s*$")
_ENTRY = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*)(?:\s*\([^)]*\))?:\s*(.*)$")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's description from the class docstring's ``Args:``/``Attributes:``.

    Google style: ``name: text`` entries, continued on deeper-indented lines; the
    text is joined into one line. Fields the docstring does not describe are absent.
    """
    doc = inspect.cleandoc(cls.__doc__ or "")
    fields = {f.name for f in dataclasses.fields(cls)}
    docs: dict[str, list[str]] = {}
    section_indent: int | None = None
    entry_indent: int | None = None
    current: str | None = None
    for line in doc.splitlines():
        section = _SECTION.match(line)
        if section:
            section_indent, entry_indent, current = len(section.group(1)), None, None
            continue
        if section_indent is None:
            continue
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= section_indent:  # the section ended
            section_indent, entry_indent, current = None, None, None
            continue
        entry = _ENTRY.match(line)
        if entry and (entry_indent is None or indent == entry_indent):
            entry_indent = indent
            current = entry.group(2)
            docs.setdefault(current, []).append(entry.group(3).strip())
        elif current is not None and entry_indent is not None and indent > entry_indent:
            docs[current].append(line.strip())
    return {k: " ".join(" ".join(v).split()) for k, v in docs.items() if k in fields}


# --------------------------------------------------------------- validators
def is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _owner(config: Any) -> str:
    return config if isinstance(config, str) else type(config).__name__


def check(config: Any, name: str, ok: bool, rule: str, value: Any = None) -> None:
    """Raise ``ConfigError("Owner.name=value must be RULE.")`` unless ``ok``.

    ``config`` is the config being checked (its class names the owner) or the owner's
    name; ``value`` defaults to the config's attribute ``name``.
    """
    if ok:
        return
    if value is None and not isinstance(config, str):
        value = getattr(config, name)
    raise ConfigError(f"{_owner(config)}.{name}={value!r} must be {rule}.")


def check_int(
    config: Any, name: str, *, minimum: int = 1, optional: bool = False, value: Any = None
) -> None:
    """An int >= ``minimum`` (1: "a positive int"), or also None when ``optional``."""
    value = getattr(config, name) if value is None and not isinstance(config, str) else value
    if optional and value is None:
        return
    rule = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    check(config, name, is_int(value) and value >= minimum, rule + (" or None" * optional), value)


def check_number(
    config: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
    value: Any = None,
) -> None:
    """A finite number within ``[low, high]`` (``low_open``/``high_open``: exclusive).

    The rule reads ``a finite number > 0``, ``a finite number >= 0`` or
    ``a number in [0, 1)``, as the bounds say.
    """
    value = getattr(config, name) if value is None and not isinstance(config, str) else value
    if optional and value is None:
        return
    ok = is_real(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if low is not None and high is not None:
        rule = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        rule = f"a finite number {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        rule = f"a finite number {'<' if high_open else '<='} {high:g}"
    else:
        rule = "a finite number"
    check(config, name, ok, rule + (" or None" * optional), value)


def check_choice(config: Any, name: str, choices: Sequence[Any], value: Any = None) -> None:
    """One of ``choices`` (the message lists them)."""
    value = getattr(config, name) if value is None and not isinstance(config, str) else value
    if value in tuple(choices) and not isinstance(value, bool):
        return
    raise ConfigError(
        f"{_owner(config)}.{name}={value!r} is not supported; use one of {tuple(choices)}."
    )


def check_bool(config: Any, name: str) -> None:
    """True or False (not 0/1)."""
    check(config, name, isinstance(getattr(config, name), bool), "True or False")
