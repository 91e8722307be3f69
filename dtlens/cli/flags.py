"""Command-line flags derived from a config dataclass: one definition for both.

:func:`add_config_flags` adds one flag per field of a config class (nested config
fields too), named after the field (``total_steps`` -> ``--total-steps``), typed and
documented from the field's annotation and the class docstring's ``Args:`` /
``Attributes:`` entry (:func:`dtlens.config_io.field_docs`), with the default in its
help, plus ``--config FILE.json``. :func:`config_from_args` builds the config from
the class defaults, then the JSON file, then the flags given explicitly, and
validates it with the class's own checks (``ConfigError`` naming field and value).

How fields become flags:

- ``int``, ``float``, ``str``: one value; ``X | None`` also takes ``none``;
- ``bool``: ``--flag`` / ``--no-flag``;
- ``Literal[...]``: one of the choices (``none`` too if optional);
- ``tuple[X, ...]``: any number of values; ``tuple[X, X]``: exactly two;
- a nested config (``TrainConfig.model``): its fields' flags, named plainly
  (``--n-layers``) unless the outer class has a field of that name (``--model.seed``);
- anything else (a list of curriculum phases): one JSON value.

Flags that are not given keep no value in the namespace (``argparse.SUPPRESS``), so
``config_from_args`` knows what was given explicitly and lets it override the file.

Only the standard library and :mod:`dtlens.config_io` are imported here (``dtlens
--help`` stays fast).

Example:
    >>> import argparse
    >>> from dtlens.report.config import ReportConfig
    >>> parser = argparse.ArgumentParser()
    >>> flags = add_config_flags(parser, ReportConfig)
    >>> config = config_from_args(parser.parse_args(["--seed", "3", "--rtgs", "0", "0.9"]), flags)
    >>> config.seed, config.rtgs, config.max_steps
    (3, (0.0, 0.9), 50)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dtlens.config_io import field_docs, field_types, jsonable, union_args
from dtlens.errors import ConfigError

__all__ = ["ConfigFlags", "add_config_flags", "config_from_args", "show_default"]


@dataclass
class ConfigFlags:
    """Which flags :func:`add_config_flags` added for a config class.

    Attributes:
        cls: the config class.
        flags: ``{field path: option string}`` (``"model.seed": "--model.seed"``).
        defaults: the command's own defaults (over the class's), nested as the config.
        config_flag: the dest of the ``--config`` flag, or None.
    """

    cls: type
    flags: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    config_flag: str | None = "config"


def add_config_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    defaults: Mapping[str, Any] | None = None,
    notes: Mapping[str, str] | None = None,
    shown: Mapping[str, str] | None = None,
    aliases: Mapping[str, Sequence[str]] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    config_file: bool = True,
) -> ConfigFlags:
    """Add a flag for every field of ``cls`` (and of its nested configs) to ``parser``.

    Args:
        parser: the (sub)command's parser; the flags go into a group named after ``cls``.
        cls: a config dataclass (its docstring documents every field).
        defaults: the command's defaults, overriding the class's (nested configs as
            dicts: ``{"model": {"n_layers": 3}}``); shown in the help.
        notes: extra help per field path (``"checkpoint_every"``), after its doc.
        shown: what the help says instead of ``default: VALUE`` per field path (a
            default the command computes, ``"required"``).
        aliases: further option strings per field path (``{"num_threads": ["--threads"]}``).
        options: further ``add_argument`` keywords per field path
            (``{"run_dir": {"required": True}}``).
        config_file: add ``--config FILE``: a JSON dict of the fields (``to_dict``'s
            output), which explicitly given flags override.

    Returns:
        What :func:`config_from_args` needs to build the config from the parsed args.
    """
    spec = ConfigFlags(cls, defaults=_nested_dict(defaults or {}))
    spec.config_flag = "config" if config_file else None
    group = parser.add_argument_group(f"{cls.__name__} fields", _summary(cls))
    if config_file:
        group.add_argument(
            "--config",
            type=Path,
            default=None,
            metavar="FILE.json",
            help=f"a {cls.__name__} as JSON (a dict of the fields below, as "
            f"{cls.__name__}.to_dict() writes it); flags given explicitly override it",
        )
    extra = _Extra(notes or {}, shown or {}, aliases or {}, options or {})
    _add_fields(parser, group, spec, cls, "", spec.defaults, extra)
    return spec


def _summary(cls: type) -> str | None:
    doc = (cls.__doc__ or "").strip()
    return plain_text(doc.splitlines()[0]) if doc else None


def plain_text(doc: str) -> str:
    """Docstring markup made plain for a terminal: ``:class:`~a.B``` -> ``B``, no backticks.

    Example:
        >>> plain_text("a :class:`~dtlens.model.config.DTConfig` or ``None``")
        'a DTConfig or None'
    """
    doc = re.sub(r":\w+:`~?([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], doc)
    return doc.replace("``", "")


@dataclass
class _Extra:
    notes: Mapping[str, str]
    shown: Mapping[str, str]
    aliases: Mapping[str, Sequence[str]]
    options: Mapping[str, Mapping[str, Any]]


def _add_fields(
    parser: argparse.ArgumentParser,
    group: Any,
    spec: ConfigFlags,
    cls: type,
    prefix: str,
    defaults: Mapping[str, Any],
    extra: _Extra,
) -> None:
    docs = field_docs(cls)
    types_ = field_types(cls)
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        annotation = types_[f.name]
        nested = _nested_config(annotation)
        if nested is not None:
            sub_defaults = defaults.get(f.name, {})
            title = f'{nested.__name__} fields ({cls.__name__}.{f.name}, "{f.name}" in --config)'
            sub_group = parser.add_argument_group(title, _summary(nested))
            _add_fields(parser, sub_group, spec, nested, f"{path}.", sub_defaults, extra)
            continue
        if prefix and f.name in _outer_names(spec):
            option = "--" + prefix.replace("_", "-") + f.name.replace("_", "-")
        else:
            option = "--" + f.name.replace("_", "-")
        default = defaults[f.name] if f.name in defaults else _class_default(f)
        kwargs = _argument(annotation, f.name)
        doc = plain_text(docs.get(f.name, "")).rstrip()
        if doc and not doc.endswith("."):
            doc += "."
        if path in extra.shown:
            shown = extra.shown[path]
            shown = shown if shown == "required" else f"default: {shown}"
        elif default is dataclasses.MISSING:
            shown = "required"
        else:
            shown = f"default: {show_default(default)}"
        text = " ".join(x for x in (doc, f"({shown})", extra.notes.get(path)) if x)
        kwargs.update(extra.options.get(path, {}))
        group.add_argument(
            option,
            *extra.aliases.get(path, ()),
            dest=path,
            default=argparse.SUPPRESS,
            help=text.replace("%", "%%"),
            **kwargs,
        )
        spec.flags[path] = option


def _outer_names(spec: ConfigFlags) -> set[str]:
    """The top-level field names of the spec's class (nested flags avoid them)."""
    return {f.name for f in dataclasses.fields(spec.cls)}


def _class_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _nested_config(annotation: Any) -> type | None:
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return annotation
    return None


def _argument(annotation: Any, name: str) -> dict[str, Any]:
    """``add_argument`` keywords (type, nargs, choices, action, metavar) for a field type."""
    args = union_args(annotation)
    optional = type(None) in args
    if args:
        rest = [a for a in args if a is not type(None)]
        annotation = rest[0] if len(rest) == 1 else Any
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if annotation in (int, float, str):
        return {"type": _parser(annotation, optional), "metavar": _metavar(annotation, optional)}
    if origin is typing.Literal:
        choices = [str(c) for c in typing.get_args(annotation)]
        metavar = "{" + ",".join([*choices, *(["none"] * optional)]) + "}"
        return {"type": _choice(choices, optional), "metavar": metavar}
    if origin is tuple:
        items = typing.get_args(annotation)
        if len(items) == 2 and items[1] is Ellipsis and items[0] in (int, float, str):
            return {"type": _parser(items[0], False), "nargs": "*", "metavar": _metavar(items[0])}
        if items and Ellipsis not in items and all(i in (int, float, str) for i in items):
            return {
                "type": _parser(items[0], False),
                "nargs": len(items),
                "metavar": _metavar(items[0]),
            }
    return {"type": _json_value, "metavar": "JSON"}


def _metavar(kind: type, optional: bool = False) -> str:
    name = {int: "INT", float: "FLOAT", str: "TEXT"}[kind]
    return f"{name}|none" if optional else name


def _parser(kind: type, optional: bool) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if optional and text.lower() == "none":
            return None
        return kind(text)

    parse.__name__ = kind.__name__ + (" (or none)" if optional else "")
    return parse


def _choice(choices: Sequence[str], optional: bool) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if optional and text.lower() == "none":
            return None
        if text not in choices:
            allowed = ", ".join([*choices, *(["none"] * optional)])
            raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {allowed})")
        return text

    return parse


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err}): {text!r}") from err


def show_default(value: Any) -> str:
    """A default as one would type it on the command line.

    Example:
        >>> show_default(None), show_default(True), show_default((0.9, 0.999)), show_default(())
        ('none', 'true', '0.9 0.999', 'none given')
    """
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if dataclasses.is_dataclass(value) or (
        isinstance(value, tuple | list) and any(dataclasses.is_dataclass(v) for v in value)
    ):
        return json.dumps(jsonable(value))
    if isinstance(value, tuple | list):
        return " ".join(show_default(v) for v in value) if value else "none given"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# ------------------------------------------------------------------ reading back
def config_from_args(args: argparse.Namespace, spec: ConfigFlags, **fixed: Any) -> Any:
    """The config the command line describes: class defaults < the command's defaults <
    ``--config`` file < flags given explicitly < ``fixed`` (field values the command
    sets itself). Validated by the class (``ConfigError`` names field and value).

    Raises:
        ConfigError: the ``--config`` file cannot be read or is not a JSON dict, or a
            field is unknown or invalid.
    """
    data = _merge(spec.defaults, read_config_file(args, spec))
    data = _merge(data, given_values(args, spec))
    data = _merge(data, _nested_dict(fixed))
    return spec.cls.from_dict(data)


def read_config_file(args: argparse.Namespace, spec: ConfigFlags) -> dict[str, Any]:
    """The ``--config`` file's dict ({} without one)."""
    path = getattr(args, spec.config_flag, None) if spec.config_flag else None
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(
            f"--config {path}: cannot read a JSON {spec.cls.__name__}: {err}"
        ) from err
    if not isinstance(data, dict):
        raise ConfigError(
            f"--config {path}: a {spec.cls.__name__} file holds a JSON object (a dict of "
            f"its fields), not a {type(data).__name__}"
        )
    return data


def given_values(args: argparse.Namespace, spec: ConfigFlags) -> dict[str, Any]:
    """The fields whose flags were given, nested as the config (``{"model": {...}}``)."""
    values = vars(args)
    flat = {path: values[path] for path in spec.flags if path in values}
    return _nested_dict({k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()})


def _nested_dict(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if isinstance(value, Mapping):
            node[parts[-1]] = _merge(node.get(parts[-1], {}), _nested_dict(value))
        else:
            node[parts[-1]] = value
    return out


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
