"""The live app in a real browser: Debian's chromium driven by Playwright.

The app is served from a background thread on a free 127.0.0.1 port with a small random
model of the Memory task's shape (9-step context, 7 actions, timesteps to 50) and a
corrupt checkpoint beside it. Expectations are independent of the app: the agent's pose
comes from a separately stepped env, the probabilities from the model's own
``action_logits`` on a window built with ``history_batch`` + ``pad_context``.

Screenshots of every stage are saved in the test's tmp dir (printed; ``pytest -s``).
Skips when chromium or the ``playwright`` package is missing (``.ci/run`` installs
chromium; never ``playwright install``, which downloads a browser).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("dash")
pytest.importorskip("playwright.sync_api", reason="the browser tests need the playwright package")

from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

import dtlens
from dtlens.analysis.edits.routine import history_batch
from dtlens.app import create_app
from dtlens.app.tabs import FIGURE_HEIGHT
from dtlens.env import ACTION_NAMES, MEMORY_ENV_ID, make_env
from dtlens.report.browser import launch_chromium, system_chromium
from tests.conftest import build_model

pytestmark = pytest.mark.skipif(
    system_chromium() is None,
    reason="the browser tests need Debian's chromium (apt-get install chromium)",
)

TINY = "tiny/"
TIMEOUT_MS = 20_000  # generous: the CI machine's 2 cores are shared
FORWARD, LEFT = 2, 0


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """A models folder: a tiny Memory-shaped model and a corrupt .pt."""
    folder = tmp_path_factory.mktemp("app_models")
    dtlens.save(build_model(n_ctx=26), folder / "tiny")
    (folder / "corrupt.pt").write_bytes(b"this is not a torch file")
    return folder


@pytest.fixture(scope="module")
def app_url(models_dir) -> Iterator[str]:
    """The app served by a background thread on a free localhost port."""
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.ERROR)  # no line per request
    app = create_app(model="tiny", models_dir=models_dir)  # the entry "tiny/"
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    thread.join(timeout=10)
    werkzeug.setLevel(level)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url, caplog) -> Iterator[object]:
    """A fresh page on the app; fails the test on any console error or server traceback."""
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    with caplog.at_level(logging.ERROR, logger="dtlens.app"):
        page.goto(app_url)
        _wait_text(page, "#episode-status", "step 0 of 50")
        page.wait_for_selector("#probabilities .barlayer .point")
        yield page
    page.close()
    assert errors == [], f"console errors: {errors}"
    assert [r.getMessage() for r in caplog.records] == [], "a callback raised on the server"


@pytest.fixture(scope="module")
def model(models_dir):
    return dtlens.load(models_dir / "tiny")


def test_keys_slider_and_tabs(page, model, tmp_path, monkeypatch):
    # the patching maps below are checked as drawn in colour: a window whose swap gap is
    # under MIN_GAP would be drawn greyed (tested in tests/unit/test_app_callbacks.py)
    monkeypatch.setattr("dtlens.plotting.patching.MIN_GAP", 0.0)
    shots = _Screenshots(page, tmp_path)
    shots.take("start")
    pov_before = page.locator("#grid-pov").screenshot()

    # arrow keys step the env: forward, forward, left
    page.locator("h1").click()  # focus the page, not a control
    for key in ("ArrowUp", "ArrowUp", "ArrowLeft"):
        page.keyboard.press(key)
    _wait_text(page, "#episode-status", "step 3 of 50")
    env = _ReferenceEnv()
    for action in (FORWARD, FORWARD, LEFT):
        env.step(action)
    x, y = env.pose
    status = page.inner_text("#episode-status")
    assert f"agent at ({x}, {y}) facing north" in status and (x, y) != (1, 3)
    trajectory = page.locator("#trajectory li").all_inner_texts()
    assert trajectory == ["forward", "forward", "left"]
    assert page.locator("#grid-pov").screenshot() != pov_before  # the view was redrawn
    expected = _probabilities(model, env, 0.9)
    _wait_probabilities(page, expected)
    assert not np.allclose(expected, _probabilities(model, _ReferenceEnv(), 0.9), atol=1e-3)
    shots.take("after_keys")

    # the action buttons step the env too
    page.get_by_role("button", name="right", exact=True).click()
    _wait_text(page, "#episode-status", "step 4 of 50")
    env.step(1)
    assert "facing east" in page.inner_text("#episode-status")
    _wait_probabilities(page, _probabilities(model, env, 0.9))

    # the RTG slider (keyboard on its thumb: Home = 0) sets every RTG token
    page.locator("#rtg-slider [role=slider]").focus()
    page.keyboard.press("Home")
    _wait_text(page, "#probabilities .gtitle", "RTG 0.00")
    _wait_probabilities(page, _probabilities(model, env, 0.0))
    rtg_chips = page.locator("#context-tokens .dt-rtg").all_inner_texts()
    assert len(rtg_chips) == 9 and all(chip.split()[-1] == "0.00" for chip in rtg_chips)
    assert "step 4 of 50" in page.inner_text("#episode-status")  # the slider's keys stay put
    shots.take("rtg_0")

    # "f" follows the model: it takes the model's most likely action at the slider's RTG
    wanted = int(_probabilities(model, env, 0.0).argmax())
    page.locator("h1").click()
    page.keyboard.press("f")
    _wait_text(page, "#episode-status", "step 5 of 50")
    env.step(wanted)
    assert page.locator("#trajectory li").all_inner_texts()[-1] == ACTION_NAMES[wanted]
    _wait_probabilities(page, _probabilities(model, env, 0.0))

    # attention: one head at both RTGs side by side, then every head of the layer
    page.locator("#attention-rtg-b [role=slider]").focus()
    page.keyboard.press("End")  # compare with RTG 1
    _wait_text(page, "#attention-pair", "RTG 1.00")
    _wait_svg_traces(page, "#attention-pair", ".heatmaplayer .hm", 2)
    titles = page.locator("#attention-pair .annotation-text").all_text_contents()
    assert titles[:2] == ["RTG 0.00", "RTG 1.00"]  # the slider's RTG, then the comparison's
    page.get_by_label("every head of the layer").check()
    _wait_svg_traces(page, "#attention-heads", ".heatmaplayer .hm", model.cfg.n_heads)
    shots.take("tab_attention")

    # logit lens and DLA for the default pair (left - right)
    page.get_by_text("Logit lens & DLA", exact=True).click()
    _wait_svg_traces(page, "#logit-lens", ".scatterlayer .trace", 1)
    _wait_svg_traces(page, "#dla", ".barlayer .point", model.cfg.n_layers * model.cfg.n_heads)
    assert "left - right" in page.text_content("#dla .gtitle")
    shots.take("tab_lens")

    # activation patching of an instruction swap (the instruction is still in view)
    page.get_by_text("Activation patching", exact=True).click()
    _wait_text(page, "#patching-message", "clean")
    assert "swap the instruction" in page.inner_text("#patching-message")
    _wait_svg_traces(page, "#patching-by-pos", ".heatmaplayer .hm", 1)
    _wait_svg_traces(page, "#patching-by-head", ".heatmaplayer .hm", 1)
    shots.take("tab_patching")

    # a key press with the patching tab open refreshes it for the new window
    before = page.inner_text("#patching-message")
    page.locator("h1").click()
    page.keyboard.press("ArrowUp")
    _wait_text(page, "#episode-status", "step 6 of 50")
    page.wait_for_function(
        "t => document.querySelector('#patching-message').innerText !== t", arg=before
    )
    shots.take("tab_patching_after_key")
    # the patched heatmaps' colour scales follow their new values (centred at 0)
    for graph in ("#patching-by-pos", "#patching-by-head"):
        low, high, zmin, zmax = page.evaluate(
            """g => {
                const trace = document.querySelector(g + ' .js-plotly-plot')._fullData[0];
                const z = trace.z.flat().filter(v => v === v);
                return [Math.min(...z), Math.max(...z), trace.zmin, trace.zmax];
            }""",
            graph,
        )
        assert zmax == pytest.approx(max(abs(low), abs(high))) and zmin == pytest.approx(-zmax)


def test_hidden_tabs_send_no_request_and_catch_up_when_opened(page, model):
    """A key press asks the server for the environment, the model panel and the visible
    tab only; a tab opened later draws the window as it is then."""
    requested: list[str] = []

    def record(request) -> None:
        if "/_dash-update-component" in request.url:
            requested.append(json.loads(request.post_data)["output"])

    _wait_svg_traces(page, "#attention-pair", ".heatmaplayer .hm", 2)  # page loaded
    page.on("request", record)
    page.locator("h1").click()
    env = _ReferenceEnv()
    for key, action in (("ArrowUp", FORWARD), ("ArrowUp", FORWARD), ("ArrowLeft", LEFT)):
        page.keyboard.press(key)
        env.step(action)
    _wait_text(page, "#episode-status", "step 3 of 50")
    _wait_probabilities(page, _probabilities(model, env, 0.9))
    for _ in range(200):  # the attention tab's request follows the key's (10 s at most)
        panels = {output.strip(".").split(".")[0] for output in requested}
        if "attention-pair" in panels:
            break
        page.wait_for_timeout(50)
    page.wait_for_timeout(500)  # time for any further request to be sent
    panels = {output.strip(".").split(".")[0] for output in requested}
    assert panels == {"grid-full", "probabilities", "attention-pair"}, requested
    # the lens tab, hidden during those presses, computes the current window when opened
    requested.clear()
    page.get_by_text("Logit lens & DLA", exact=True).click()
    _wait_svg_traces(page, "#dla", ".barlayer .point", model.cfg.n_layers * model.cfg.n_heads)
    window = history_batch(np.stack(env.images), env.actions, [0.9] * len(env.images), 9)
    with torch.no_grad():
        logits = model.action_logits(model.pad_context(window))[0, -1]
    expected = float(logits[LEFT] - logits[1])  # left - right, the tab's default pair
    title = page.text_content("#dla .gtitle")
    assert f"sums to {expected:.3f}" in title, title
    assert [output.strip(".").split(".")[0] for output in requested] == ["logit-lens"]


def test_arrows_move_the_agent_wherever_the_focus_is_but_a_text_box(page, model, tmp_path):
    shots = _Screenshots(page, tmp_path)
    env = _ReferenceEnv()

    # a focused radio group: the arrow turns the agent and leaves the layout alone
    radio = page.locator("#scenario-instruction input[value=key]")
    radio.focus()
    page.keyboard.press("ArrowLeft")
    _wait_text(page, "#episode-status", "step 1 of 50")
    env.step(LEFT)
    assert page.inner_text("#episode-status").startswith("key/top-ball")
    assert radio.is_checked() and _focused(page, "#scenario-instruction input[value=key]")
    assert page.locator("#trajectory li").all_inner_texts() == ["left"]

    # a focused slider: the arrows turn the agent (ArrowDown does nothing), the RTG stays
    thumb = page.locator("#rtg-slider [role=slider]")
    thumb.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowUp")
    _wait_text(page, "#episode-status", "step 3 of 50")
    env.step(1)
    env.step(FORWARD)
    assert page.locator("#trajectory li").all_inner_texts() == ["left", "right", "forward"]
    assert thumb.get_attribute("aria-valuenow") == "0.9"
    _wait_probabilities(page, _probabilities(model, env, 0.9))
    assert "RTG 0.90" in page.text_content("#probabilities .gtitle")
    shots.take("focused_controls")

    # the RTG box is a text box: arrows edit it, Enter applies it, the agent stays
    box = page.locator("#rtg-slider input[type=number]")
    box.fill("0.25")
    box.press("Enter")
    _wait_text(page, "#probabilities .gtitle", "RTG 0.25")
    _wait_probabilities(page, _probabilities(model, env, 0.25))
    assert _focused(page, "#rtg-slider input[type=number]")  # still typing there
    box.press("ArrowUp")  # the number box's own step
    assert box.input_value() == "0.26"
    box.press("Enter")
    _wait_text(page, "#probabilities .gtitle", "RTG 0.26")
    assert thumb.get_attribute("aria-valuenow") == "0.26"
    assert "step 3 of 50" in page.inner_text("#episode-status")  # no key reached the agent
    assert page.locator("#trajectory li").count() == 3
    shots.take("rtg_box")


def test_model_picker_shows_errors_in_the_page(page, model, tmp_path):
    shots = _Screenshots(page, tmp_path)
    page.locator("#model-picker").click()
    page.get_by_role("option", name="corrupt.pt").click()
    _wait_text(page, "#model-message", "is not a readable torch file")
    assert page.locator("#probabilities .barlayer .point").count() == 0  # no stale bars
    _wait_text(page, "#attention-message", "is not a readable torch file")
    shots.take("bad_checkpoint")

    # a value the picker does not offer (a hand-crafted request) is refused, not loaded
    page.evaluate("dash_clientside.set_props('model-picker', {value: '../../etc/passwd'})")
    _wait_text(page, "#model-message", "is outside the models folder")

    page.locator("#model-picker").click()
    page.get_by_role("option", name=TINY).click()
    page.wait_for_selector("#probabilities .barlayer .point")
    assert page.inner_text("#model-message") == ""
    _wait_probabilities(page, _probabilities(model, _ReferenceEnv(), 0.9))
    # the attention plot is back at full size (not the error placeholder's)
    _wait_svg_traces(page, "#attention-pair", ".heatmaplayer .hm", 2)
    height = page.locator("#attention-pair .main-svg").first.get_attribute("height")
    assert float(height) == FIGURE_HEIGHT
    shots.take("picker_back")


# ---------------------------------------------------------------------------- helpers
class _ReferenceEnv:
    """The Memory env stepped alongside the page, in the page's starting layout."""

    def __init__(self):
        self.env = make_env(MEMORY_ENV_ID, max_steps=50, one_hot=False)
        obs, _ = self.env.reset(seed=0, options={"instruction": "key", "top": "ball"})
        self.images = [obs["image"]]
        self.actions: list[int] = []

    def step(self, action: int) -> None:
        self.images.append(self.env.step(action)[0]["image"])
        self.actions.append(action)

    @property
    def pose(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.env.unwrapped.agent_pos)


def _probabilities(model, env: _ReferenceEnv, rtg: float) -> np.ndarray:
    """The model's next-action distribution on the reference episode."""
    steps = len(env.images)
    window = history_batch(np.stack(env.images), env.actions, [rtg] * steps, 9)
    with torch.no_grad():
        return model.action_logits(model.pad_context(window))[0, -1].softmax(-1).numpy()


def _wait_probabilities(page, expected: np.ndarray) -> None:
    """Wait until the probability table shows ``expected`` (3 decimals)."""
    cells = [f"{p:.3f}" for p in expected]
    page.wait_for_function(
        """cells => {
            const row = document.querySelectorAll('#probabilities-table tr')[1];
            return row && [...row.cells].map(c => c.innerText).join(',') === cells.join(',');
        }""",
        arg=cells,
    )
    names = page.locator("#probabilities-table th").all_inner_texts()
    assert names == list(ACTION_NAMES)


def _focused(page, selector: str) -> bool:
    return page.evaluate("s => document.activeElement === document.querySelector(s)", selector)


def _wait_text(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([s, t]) => (document.querySelector(s)?.textContent ?? '').includes(t)",
        arg=[selector, text],
    )


def _wait_svg_traces(page, graph: str, selector: str, n: int) -> None:
    """Wait until ``graph``'s plotly SVG has at least ``n`` elements matching ``selector``."""
    page.wait_for_function(
        "([g, s, n]) => document.querySelectorAll(`${g} .main-svg ${s}`).length >= n",
        arg=[graph, selector, n],
    )


class _Screenshots:
    def __init__(self, page, folder: Path):
        self.page, self.folder = page, folder

    def take(self, name: str) -> None:
        path = self.folder / f"{name}.png"
        self.page.screenshot(path=path, full_page=True)
        print(f"screenshot: {path}")
