"""Refuse malformed callback requests with HTTP 400 before any callback runs.

The page talks to the server through one route, ``POST /_dash-update-component``, whose
JSON body names the callback (``output``), its outputs, the values of its inputs and
states, and which inputs changed. The page's own requests are always well formed; a
hand-crafted, truncated or stale one (a page left open across an upgrade) would
otherwise reach Dash's dispatcher or a callback's argument list and end as an HTTP 500
with a traceback. :func:`check_callback_request` checks a body against the app's
callbacks; :func:`install_request_checks` makes the app's Flask server run it on every
such request and answer a malformed one with HTTP 400 and the reason, as plain text.

Values are checked where they are used: a callback answers a bad layer, action, RTG,
model or key event with a message in the page. The one exception is the page's session
id, which every callback needs to find its episode: a missing or malformed one is a
400 too. The value checks the callbacks (:mod:`dtlens.app.callbacks`) and the GIF button
(:mod:`dtlens.app.gif`) use live here too (:func:`key_events`, :func:`pick_index`,
:func:`check_settings`, :func:`check_rtg`, :func:`is_number`), with :func:`guard`, which
turns what they raise into the message shown.

Example:
    >>> callbacks = {"..out.children..": {
    ...     "inputs": [{"id": "box", "property": "value"}], "state": []}}
    >>> check_callback_request({"output": "..out.children..",
    ...     "outputs": [{"id": "out", "property": "children"}],
    ...     "inputs": [{"id": "box", "property": "value", "value": 3}], "state": []}, callbacks)
    >>> check_callback_request({"output": "..nope.children.."}, callbacks)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    dtlens.errors.RequestError: unknown callback output '..nope.children..' (this page ...
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import dash
import flask

from dtlens.app.layout import IDS
from dtlens.errors import ConfigError, DTLensError, EnvError, RequestError

__all__ = [
    "CALLBACK_ROUTE",
    "MAX_SESSION_ID",
    "check_callback_request",
    "check_rtg",
    "check_session_id",
    "check_settings",
    "guard",
    "install_request_checks",
    "is_number",
    "key_events",
    "pick_index",
]

log = logging.getLogger("dtlens.app")
T = TypeVar("T")

#: the route (after the app's path prefix) the page posts callback requests to.
CALLBACK_ROUTE = "_dash-update-component"
#: the longest session id accepted (the page's are 32 hex digits).
MAX_SESSION_ID = 64
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]+")
_RELOAD = "(this page is out of date: reload it)"


def check_session_id(value: Any) -> None:
    """Raise :class:`~dtlens.errors.RequestError` unless ``value`` is a page's session id.

    A non-empty string of at most :data:`MAX_SESSION_ID` letters, digits, ``-`` or ``_``
    (the page's are ``uuid4().hex``).

    Example:
        >>> check_session_id("0f3c9a")
        >>> check_session_id(None)
        Traceback (most recent call last):
        dtlens.errors.RequestError: the session id must be a string of 1 to 64 letters, digits, '-' or '_', got None; reload the page for a new one.
    """  # noqa: E501
    if (
        not isinstance(value, str)
        or len(value) > MAX_SESSION_ID
        or not _SESSION_ID.fullmatch(value)
    ):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise RequestError(
            f"the session id must be a string of 1 to {MAX_SESSION_ID} letters, digits, "
            f"'-' or '_', got {shown}; reload the page for a new one."
        )


#: checks of the values of particular ``"id.property"`` inputs / states.
VALUE_CHECKS: dict[str, Callable[[Any], None]] = {f"{IDS.SESSION}.data": check_session_id}


def check_callback_request(body: Any, callbacks: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise :class:`~dtlens.errors.RequestError` unless ``body`` is a well-formed request
    for one of ``callbacks``.

    Well formed: a JSON object whose ``output`` names a callback; whose ``outputs``
    list that callback's outputs (``{"id", "property"}``, in order); whose ``inputs``
    and ``state`` list its inputs and states in order (``{"id", "property"}`` and an
    optional ``value``); whose ``changedPropIds`` (optional) are some of its inputs'
    ``"id.property"``; and whose values pass :data:`VALUE_CHECKS` (the session id).

    Args:
        body: the request's parsed JSON (None when it was not JSON).
        callbacks: the app's ``callback_map`` (output key -> ``{"inputs", "state"}``).

    Raises:
        RequestError: the body's first problem, named.
    """
    if not isinstance(body, dict):
        raise RequestError(
            "a callback request must be a JSON object (Content-Type: application/json) "
            f"with 'output', 'outputs', 'inputs' and 'state'; got {_kind(body)}."
        )
    output = body.get("output")
    if not isinstance(output, str) or output not in callbacks:
        shown = repr(output) if len(repr(output)) <= 120 else repr(output)[:117] + "..."
        raise RequestError(f"unknown callback output {shown} {_RELOAD}.")
    spec = callbacks[output]
    _check_outputs(body.get("outputs"), output)
    values = {}
    for field in ("inputs", "state"):
        values.update(_check_props(body.get(field), spec.get(field, []), field))
    changed = body.get("changedPropIds", [])
    inputs = {_prop_id(item) for item in spec.get("inputs", [])}
    if not isinstance(changed, list) or not all(
        isinstance(item, str) and item in inputs for item in changed
    ):
        raise RequestError(
            f"'changedPropIds' must list some of the callback's inputs {sorted(inputs)}, "
            f"got {changed!r} {_RELOAD}."
        )
    for prop, check in VALUE_CHECKS.items():
        if prop in values:
            check(values[prop])


def install_request_checks(app: dash.Dash) -> None:
    """Make ``app``'s server answer malformed callback requests with HTTP 400.

    Registers a Flask ``before_request`` hook that runs :func:`check_callback_request`
    on every ``POST`` to the callback route (other routes are untouched) and answers a
    failure with status 400 and the error's message as plain text.

    Example:
        >>> app = dash.Dash("demo")
        >>> app.layout = dash.html.Div()
        >>> install_request_checks(app)
        >>> response = app.server.test_client().post("/_dash-update-component", data="{")
        >>> response.status_code, response.mimetype
        (400, 'text/plain')
    """
    route = app.config.routes_pathname_prefix + CALLBACK_ROUTE

    def check() -> flask.Response | None:
        request = flask.request
        if request.method != "POST" or request.path != route:
            return None
        try:
            check_callback_request(request.get_json(silent=True), app.callback_map)
        except RequestError as err:
            return flask.Response(f"{err}\n", status=400, mimetype="text/plain")
        return None

    app.server.before_request(check)


# ----------------------------------------------------------------------- helpers
def _check_outputs(outputs: Any, output: str) -> None:
    """``outputs`` must list the callback's outputs (one dict for a single output)."""
    wanted = [_split(part) for part in output.removeprefix("..").removesuffix("..").split("...")]
    if output.startswith(".."):
        ok = isinstance(outputs, list) and len(outputs) == len(wanted)
        ok = ok and all(_names(item) == pair for item, pair in zip(outputs, wanted, strict=False))
    else:
        ok = isinstance(outputs, dict) and _names(outputs) == wanted[0]
    if not ok:
        names = [f"{i}.{p}" for i, p in wanted]
        raise RequestError(
            f"'outputs' must list the callback's outputs {names} as "
            f"{{'id': ..., 'property': ...}} objects, got {_kind(outputs)} {_RELOAD}."
        )


def _check_props(items: Any, spec: list[Mapping[str, Any]], field: str) -> dict[str, Any]:
    """``items`` must list ``spec``'s ids and properties in order; returns their values.

    Dash leaves out an empty list (a callback without states sends no ``state``).
    """
    wanted = [(item["id"], item["property"]) for item in spec]
    if items is None and not wanted:
        return {}
    ok = isinstance(items, list) and len(items) == len(wanted)
    ok = ok and all(_names(item) == pair for item, pair in zip(items, wanted, strict=False))
    if not ok:
        names = [f"{i}.{p}" for i, p in wanted]
        raise RequestError(
            f"'{field}' must list the callback's {field} {names}, in order, as "
            f"{{'id': ..., 'property': ..., 'value': ...}} objects, got {_kind(items)} "
            f"{_RELOAD}."
        )
    return {f"{i}.{p}": item.get("value") for (i, p), item in zip(wanted, items, strict=True)}


def _names(item: Any) -> tuple[Any, Any] | None:
    if not isinstance(item, dict):
        return None
    return item.get("id"), item.get("property")


def _split(prop_id: str) -> tuple[str, str]:
    component, _, prop = prop_id.rpartition(".")
    return component, prop


def _prop_id(item: Mapping[str, Any]) -> str:
    return f"{item['id']}.{item['property']}"


def _kind(value: Any) -> str:
    """A short description of a JSON value for an error message."""
    if value is None:
        return "nothing (or not JSON)"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return f"an object with keys {sorted(map(str, value))[:8]}"
    return f"a {type(value).__name__}"


# ------------------------------------------------- the callbacks' value checks
def guard(compute: Callable[[], T], on_error: Callable[[str], T], what: str = "callback") -> T:
    """``compute()``, or ``on_error(message)`` if it raises (the page never sees a traceback).

    A DTLensError (an error a user can cause) gives its own message; anything else is a
    bug: its traceback is logged as ``dtlens app <what> failed`` and the message says so.

    Example:
        >>> guard(lambda: check_rtg("high"), lambda message: f"shown: {message}")
        "shown: the RTG must be a finite number, got 'high'."
        >>> guard(lambda: 0.9, print)
        0.9
    """
    try:
        return compute()
    except DTLensError as err:
        return on_error(str(err))
    except Exception as err:  # a bug: keep the page alive, log the traceback
        log.exception(f"dtlens app {what} failed")
        return on_error(f"internal error ({type(err).__name__}: {err}); see the server log.")


def key_events(key_events: Any) -> list[dict[str, Any]]:
    """The events of the page's ``key-events`` store (see ``assets/keyboard.js``).

    Raises:
        EnvError: the store is not ``{"events": [{"id": int, ...}, ...]}`` (None: none).

    Example:
        >>> key_events({"events": [{"id": 1, "action": 2}]})
        [{'id': 1, 'action': 2}]
    """
    if key_events is None or (isinstance(key_events, dict) and key_events.get("events") is None):
        return []
    events = key_events.get("events") if isinstance(key_events, dict) else None
    if not isinstance(events, list) or not all(
        isinstance(e, dict) and isinstance(e.get("id"), int) and not isinstance(e["id"], bool)
        for e in events
    ):
        shown = repr(key_events) if len(repr(key_events)) <= 80 else repr(key_events)[:77] + "..."
        raise EnvError(
            'key events must be {"events": [{"id": int, "action": int}, ...]}, got '
            f"{shown}; reload the page."
        )
    return events


def pick_index(value: Any, n: int, name: str) -> int:
    """A picked layer / head as an int in ``0..n-1`` (None, not picked yet, is 0).

    Raises:
        ConfigError: ``value`` is not such an int.

    Example:
        >>> pick_index(None, 3, "layer"), pick_index(2, 3, "layer")
        (0, 2)
    """
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an int in 0..{n - 1}, got {value!r}; pick one.")
    if not 0 <= value < n:
        raise ConfigError(
            f"{name} {value} is out of range: the model has {n} {name}s (0..{n - 1}); pick one."
        )
    return value


def check_settings(settings: dict[str, Any]) -> None:
    """Raise ConfigError unless every setting (name -> value) is a string or a number.

    The values themselves are checked where they are used; this keeps a hand-crafted
    list or object out of cache keys.

    Example:
        >>> check_settings({"edit": "rtg", "action a": 0})
        >>> check_settings({"mode": ["exact"]})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        dtlens.errors.ConfigError: mode must be a name or number from its picker, got ['exact']...
    """
    for name, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(
                f"{name} must be a name or number from its picker, got {value!r}; pick one."
            )


def check_rtg(value: float | None) -> float:
    """A slider value as a float RTG.

    Raises:
        ConfigError: the value is not a finite number.

    Example:
        >>> check_rtg(1), check_rtg(0.5)
        (1.0, 0.5)
        >>> check_rtg(True)
        Traceback (most recent call last):
        dtlens.errors.ConfigError: the RTG must be a finite number, got True.
    """
    if not is_number(value):
        raise ConfigError(f"the RTG must be a finite number, got {value!r}.")
    return float(value)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite number (a valid RTG, see :func:`check_rtg`): the model
    panel only batches the attention tab's second RTG with its own when it is one (the tab
    reports a bad one).

    Example:
        >>> is_number(0.9), is_number(float("nan")), is_number(False), is_number("0.9")
        (True, False, False, False)
    """
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
