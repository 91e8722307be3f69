"""The app behind HTTP: malformed requests, the waitress server, the model's lock.

Requests are posted the way the page posts them (``/_dash-update-component``, bodies
built from the app's own callback map), with Flask's test client or over real HTTP to
a waitress server on a free 127.0.0.1 port. A malformed request must be answered with
HTTP 400 (the envelope, the session id) or a message in the page (a value), never with
a 500 or a logged traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

pytest.importorskip("dash")
pytest.importorskip("waitress")

import dtlens
from dtlens.app import create_app, make_server, run
from dtlens.app.callbacks import AppState
from dtlens.app.layout import IDS
from dtlens.app.models import ModelCatalog
from dtlens.app.validation import MAX_SESSION_ID
from dtlens.errors import ConfigError
from dtlens.model import hooks_lock
from tests.conftest import build_batch, build_model

ROUTE = "/_dash-update-component"
TINY = "tiny/"
#: a valid value for every input / state of the play and analysis callbacks
GOOD = {
    f"{IDS.SESSION}.data": "sid1",
    f"{IDS.KEY_EVENTS}.data": {"events": [{"id": 1, "action": 2}]},
    f"{IDS.INSTRUCTION}.value": "key",
    f"{IDS.TOP}.value": "ball",
    f"{IDS.RTG}.value": 0.9,
    f"{IDS.MODEL}.value": TINY,
    f"{IDS.LAYER}.value": 0,
    f"{IDS.HEAD}.value": 0,
    f"{IDS.RTG_B}.value": 0.0,
    f"{IDS.ALL_HEADS}.value": [],
    f"{IDS.LENS_A}.value": 0,
    f"{IDS.LENS_B}.value": 1,
    f"{IDS.EDIT}.value": "rtg",
    f"{IDS.EDIT_RTG}.value": 0.0,
    f"{IDS.PATCH_A}.value": 0,
    f"{IDS.PATCH_B}.value": 1,
    f"{IDS.PATCH_MODE}.value": "exact",
}
#: the callbacks of the page's panels: first output -> (its message output, its tab)
PANELS = {
    IDS.FULL_GRID: (IDS.ENV_MESSAGE, None),
    IDS.PROBS: (IDS.MODEL_MESSAGE, IDS.TAB_ATTENTION),
    IDS.ATTENTION: (IDS.ATTENTION_MESSAGE, IDS.TAB_ATTENTION),
    IDS.LENS: (IDS.LENS_MESSAGE, IDS.TAB_LENS),
    IDS.PATCH_POS: (IDS.PATCH_MESSAGE, IDS.TAB_PATCHING),
}
#: values no control of the page sends (JSON: NaN is sent as the literal NaN)
JUNK = [None, "x", -1, [], {"a": 1}, True, float("nan")]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("app_server")
    dtlens.save(build_model(), folder / "tiny")
    return folder


@pytest.fixture(scope="module")
def app(models_dir):
    return create_app(model="tiny", models_dir=models_dir)


@pytest.fixture
def client(app, caplog):
    """Flask's test client; fails the test if anything logged an error (a traceback)."""
    with caplog.at_level(logging.ERROR):
        yield app.server.test_client()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def callback_key(app, first_output: str) -> str:
    (key,) = [k for k in app.callback_map if k.startswith(f"..{first_output}.")]
    return key


def request_body(app, first_output: str, values: dict | None = None, changed=None) -> dict:
    """The body the page posts for the callback whose first output is ``first_output``."""
    key = callback_key(app, first_output)
    spec = app.callback_map[key]
    tab = PANELS.get(first_output, (None, None))[1]
    vals = {**GOOD, f"{IDS.TABS}.value": tab, **(values or {})}

    def props(items):
        return [
            {"id": i["id"], "property": i["property"], "value": vals.get(_prop(i))} for i in items
        ]

    outputs = [
        dict(zip(("id", "property"), part.rsplit(".", 1), strict=True))
        for part in key.strip(".").split("...")
    ]
    inputs = props(spec["inputs"])
    return {
        "output": key,
        "outputs": outputs,
        "inputs": inputs,
        "state": props(spec["state"]),
        "changedPropIds": changed if changed is not None else [_prop(spec["inputs"][0])],
    }


def post(client, body, **kwargs):
    if "data" not in kwargs:
        kwargs = {"data": json.dumps(body), "content_type": "application/json", **kwargs}
    return client.post(ROUTE, **kwargs)


def message(response, message_id: str) -> str:
    """The text of a panel's message output in a callback's response ('' if none)."""
    shown = response.get_json()["response"][message_id]["children"]
    return "" if shown is None else shown["props"]["children"]


def _prop(item) -> str:
    return f"{item['id']}.{item['property']}"


# ------------------------------------------------------------------- well formed
def test_the_pages_own_requests_are_answered(app, client):
    for first_output, (message_id, _) in PANELS.items():
        response = post(client, request_body(app, first_output))
        assert response.status_code == 200, (first_output, response.text)
        assert message(response, message_id) == "" or first_output == IDS.PATCH_POS
    # the patching tab's message is its summary (an info box), not an error
    response = post(client, request_body(app, IDS.PATCH_POS))
    assert "clean" in message(response, IDS.PATCH_MESSAGE)


# ------------------------------------------------------------------- the envelope
def _without(body, key):
    return {k: v for k, v in body.items() if k != key}


ENVELOPES = {
    "not JSON": (lambda b: None, "must be a JSON object"),
    "a JSON list": (lambda b: [b], "must be a JSON object"),
    "no output": (lambda b: _without(b, "output"), "unknown callback output None"),
    "unknown output": (lambda b: {**b, "output": "..nope.figure.."}, "unknown callback output"),
    "no inputs": (lambda b: _without(b, "inputs"), "'inputs' must list"),
    "too few inputs": (lambda b: {**b, "inputs": b["inputs"][:2]}, "'inputs' must list"),
    "inputs as strings": (lambda b: {**b, "inputs": ["a"] * len(b["inputs"])}, "'inputs' must"),
    "inputs out of order": (lambda b: {**b, "inputs": b["inputs"][::-1]}, "'inputs' must list"),
    "no state": (lambda b: _without(b, "state"), "'state' must list"),
    "a foreign state": (
        lambda b: {**b, "state": [{"id": "x", "property": "y"}, *b["state"][1:]]},
        "'state' must list",
    ),
    "no outputs": (lambda b: _without(b, "outputs"), "'outputs' must list"),
    "too few outputs": (lambda b: {**b, "outputs": b["outputs"][:2]}, "'outputs' must list"),
    "changedPropIds not a list": (lambda b: {**b, "changedPropIds": 5}, "'changedPropIds'"),
    "changedPropIds of no input": (lambda b: {**b, "changedPropIds": ["junk"]}, "changedPropIds"),
}


@pytest.mark.parametrize("case", list(ENVELOPES))
def test_malformed_requests_are_refused_with_400(app, client, case):
    make, expected = ENVELOPES[case]
    body = make(request_body(app, IDS.FULL_GRID))
    response = post(client, body) if body is not None else post(client, None, data="{not json")
    assert response.status_code == 400, response.text
    assert response.mimetype == "text/plain"
    assert expected in response.text and "Traceback" not in response.text


def test_a_form_post_is_refused_with_400(client):
    response = post(client, None, data="a=b")  # no JSON content type
    assert response.status_code == 400 and "must be a JSON object" in response.text


@pytest.mark.parametrize("session_id", [None, "", 5, "a" * (MAX_SESSION_ID + 1), "../x", {"a": 1}])
def test_bad_session_ids_are_refused_with_400(app, client, session_id):
    for first_output in PANELS:
        body = request_body(app, first_output, {f"{IDS.SESSION}.data": session_id})
        response = post(client, body)
        assert response.status_code == 400, (first_output, response.text)
        assert "the session id must be a string" in response.text


def test_other_routes_are_not_checked(client):
    assert client.get("/").status_code == 200
    assert client.get("/_dash-layout").status_code == 200


# ------------------------------------------------------------------- the values
def _fields(app, first_output):
    spec = app.callback_map[callback_key(app, first_output)]
    inputs = [_prop(i) for i in spec["inputs"]]
    return inputs, [_prop(s) for s in spec["state"] if _prop(s) != f"{IDS.SESSION}.data"]


@pytest.mark.parametrize("first_output", list(PANELS))
def test_junk_values_are_answered_not_raised(app, client, first_output):
    """Every input and state of every panel's callback, given values no control sends:
    an answer (200, or 204 for a hidden tab), never a 500, nothing logged (``client``)."""
    inputs, states = _fields(app, first_output)
    for field in inputs + states:
        for junk in JUNK:
            changed = [field] if field in inputs else None
            body = request_body(app, first_output, {field: junk}, changed=changed)
            response = post(client, body)
            assert response.status_code in (200, 204), (field, junk, response.text[-500:])
            assert "internal error" not in response.text, (field, junk)


BAD_VALUES = [
    (IDS.FULL_GRID, IDS.KEY_EVENTS, "data", {"events": "x"}, "key events must be"),
    (IDS.FULL_GRID, IDS.KEY_EVENTS, "data", {"events": [{"id": "1"}]}, "key events must be"),
    (IDS.FULL_GRID, IDS.KEY_EVENTS, "data", {"events": [{"id": 9, "action": 9}]}, "outside 0..6"),
    (IDS.PROBS, IDS.MODEL, "value", "a" * 300, "is not a usable file name"),
    (IDS.PROBS, IDS.MODEL, "value", "a\x00b", "is not a usable file name"),
    (IDS.PROBS, IDS.RTG, "value", "high", "the RTG must be a finite number"),
    (IDS.ATTENTION, IDS.LAYER, "value", "x", "layer must be an int in 0..1"),
    (IDS.ATTENTION, IDS.HEAD, "value", 99, "head 99 is out of range: the model has 4 heads"),
    (IDS.ATTENTION, IDS.LAYER, "value", -1, "layer -1 is out of range"),
    (IDS.LENS, IDS.LENS_A, "value", 1, "pick two different actions"),
    (IDS.PATCH_POS, IDS.EDIT, "value", ["rtg"], "edit must be a name or number"),
    (IDS.PATCH_POS, IDS.PATCH_A, "value", {"a": 1}, "action a must be a name or number"),
    (IDS.PATCH_POS, IDS.EDIT, "value", "nope", "edit must be one of"),
]


@pytest.mark.parametrize(("first_output", "component", "prop", "value", "expected"), BAD_VALUES)
def test_bad_values_get_a_message_in_the_page(
    app, client, first_output, component, prop, value, expected
):
    field = f"{component}.{prop}"
    inputs, _ = _fields(app, first_output)
    body = request_body(
        app,
        first_output,
        {f"{IDS.SESSION}.data": "messages", field: value},
        changed=[field] if field in inputs else None,
    )
    response = post(client, body)
    assert response.status_code == 200, response.text
    assert expected in message(response, PANELS[first_output][0])


# --------------------------------------------------------------- waitress server
def _http(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_waitress_serves_the_app_and_answers_requests_in_parallel(app):
    server = make_server(app, port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.port}"
    assert server.url == base + "/"
    try:
        status, page = _http(base + "/")
        assert status == 200 and b"dtlens live" in page
        status, text = _http(base + ROUTE, {"output": "..nope.figure.."})
        assert status == 400 and b"unknown callback output" in text

        # eight pages pressing keys at once each see their own episode
        results: dict[str, list] = {}

        def page_presses(sid):
            statuses = []
            for i in range(3):
                events = {"events": [{"id": j + 1, "action": 2} for j in range(i + 1)]}
                body = request_body(
                    app,
                    IDS.FULL_GRID,
                    {f"{IDS.SESSION}.data": sid, f"{IDS.KEY_EVENTS}.data": events},
                )
                status, text = _http(base + ROUTE, body)
                statuses.append(status)
                episode = json.loads(text)["response"][IDS.EPISODE]["data"]
                statuses.append(episode["version"])
            results[sid] = statuses

        threads = [threading.Thread(target=page_presses, args=(f"p{i}",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        # each press (one new event per request) steps that page's episode once
        assert results == {f"p{i}": [200, 2, 200, 3, 200, 4] for i in range(8)}
    finally:
        server.close()
        thread.join(timeout=10)
    assert not thread.is_alive()  # close() from another thread ended run()
    server.close()  # a second close does nothing


def test_make_server_and_run_check_their_arguments(app):
    with pytest.raises(ConfigError, match="server must be one of"):
        run(app, server="gunicorn", torch_threads=None)
    with pytest.raises(ConfigError, match=r"debug mode .* needs Flask"):
        run(app, debug=True, server="waitress", torch_threads=None)
    with pytest.raises(ConfigError, match="server threads must be a positive int"):
        make_server(app, port=0, threads=0)
    idle = make_server(app, port=0)
    idle.close()  # closed before it ran: run() returns at once
    idle.run()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is in use"):
            make_server(app, port=port)


def test_ctrl_c_stops_the_server_and_reaches_the_caller(app, monkeypatch):
    """waitress returns quietly on Ctrl+C; run() closes it and raises KeyboardInterrupt,
    so `dtlens app` ends like every interrupted command (one line, exit 130)."""
    import dtlens.app.server as server_module

    closed = []

    class Interrupted:  # a server that gets Ctrl+C and, like waitress, swallows it
        def run(self):
            with contextlib.suppress(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)

        def close(self):
            closed.append(True)

    monkeypatch.setattr(server_module, "make_server", lambda *args, **kwargs: Interrupted())
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        run(app, torch_threads=None)
    assert closed == [True] and signal.getsignal(signal.SIGINT) is handler


# ---------------------------------------------------------------- the model's lock
def test_the_apps_lock_is_the_models_public_hooks_lock(models_dir):
    catalog = ModelCatalog(models_dir=models_dir)
    model = AppState(catalog).catalog.get(TINY)
    lock = hooks_lock(model)
    assert catalog.forward_lock(model) is lock is hooks_lock(model)
    assert hooks_lock(build_model()) is not lock  # one lock per model
    with lock, lock:  # re-entrant: a locked helper may call another
        pass
    with pytest.raises(ConfigError, match="needs the model object"):
        hooks_lock("memorydt")


def test_hooks_lock_keeps_threads_hooks_apart():
    """Four threads each add their own hook and cache a forward of one model; holding
    the lock, each gets exactly what it gets alone."""
    model = build_model()
    batch = build_batch()
    name = "blocks.0.hook_resid_mid"

    def run_with(offset):
        def hook(value, hook):
            return value + offset

        with torch.no_grad():
            return model.run_with_hooks(batch, fwd_hooks=[(name, hook)])

    alone = {k: run_with(float(k)) for k in range(4)}
    together: dict[int, torch.Tensor] = {}

    def worker(k):
        for _ in range(5):
            with hooks_lock(model):
                together[k] = run_with(float(k))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        torch.testing.assert_close(together[k], alone[k])
    assert not torch.allclose(alone[0], alone[1])  # the hooks do change the output
