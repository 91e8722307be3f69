"""The app's "download GIF" button: its plain callback, its component and its wiring.

Expectations are independent of the app: the model's own greedy episode
(``play_greedy`` on a separately loaded copy) and a separately stepped env's
``render()``.
"""

from __future__ import annotations

import base64
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

pytest.importorskip("dash")

import dtlens
from dtlens.analysis.edits.routine import play_greedy
from dtlens.app.callbacks import AppState
from dtlens.app.gif import gif_download
from dtlens.app.layout import IDS
from dtlens.app.models import ModelCatalog
from dtlens.app.server import create_app
from dtlens.env import MEMORY_ENV_ID, Scenario, make_env
from tests.conftest import build_model
from tests.unit.app_pages import find_component

TINY = "tiny/"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("app_gif") / "models"
    folder.mkdir()
    dtlens.save(build_model(n_ctx=26), folder / "tiny")
    (folder / "corrupt.pt").write_bytes(b"this is not a torch file")
    return folder


@pytest.fixture(scope="module")
def state(models_dir) -> AppState:
    return AppState(ModelCatalog(models_dir=models_dir))


def test_the_gif_is_the_models_greedy_episode_drawn_by_the_env(state, models_dir):
    out = gif_download(state, TINY, "ball", "key", 0.9, max_steps=8)
    assert out.message is None and out.filename == "ball-top-key_rtg0.9.gif"
    assert out.content[:6] == b"GIF89a"
    model = dtlens.load(models_dir / "tiny")
    run = play_greedy(model, Scenario("ball", "key"), rtg=0.9, max_steps=8)
    frames = iio.imread(out.content, index=None, extension=".gif")
    assert out.steps == len(run.actions) and frames.shape[0] == len(run.actions) + 1
    env = make_env(MEMORY_ENV_ID, max_steps=8, one_hot=False, render_mode="rgb_array")
    env.reset(seed=0, options={"instruction": "ball", "top": "key"})
    expected = [env.render()]
    for action in run.actions:
        env.step(action)
        expected.append(env.render())
    height = expected[0].shape[0]
    for frame, want in zip(frames, expected, strict=True):
        assert np.array_equal(frame[:height, :, :3], want)


@pytest.mark.parametrize(
    ("model_value", "rtg", "expected"),
    [
        ("corrupt.pt", 0.9, "corrupt.pt"),
        (None, 0.9, "no model is picked"),
        (TINY, None, "RTG must be a finite number"),
        (TINY, float("nan"), "RTG must be a finite number"),
    ],
)
def test_errors_come_back_as_messages(state, model_value, rtg, expected):
    out = gif_download(state, model_value, "key", "ball", rtg)
    assert out.content is None and expected in out.message


def test_the_page_has_the_button_and_the_callback_sends_the_file(models_dir):
    app = create_app(model=str(models_dir / "tiny"), models_dir=models_dir)
    page = app.layout()
    assert find_component(page, IDS.GIF_BUTTON).children.startswith("download GIF")
    assert type(find_component(page, IDS.GIF_DOWNLOAD)).__name__ == "Download"
    (entry,) = [v for k, v in app.callback_map.items() if f"{IDS.GIF_DOWNLOAD}.data" in k]
    assert {"id": IDS.GIF_BUTTON, "property": "n_clicks"} in entry["inputs"]
    states = [(s["id"], s["property"]) for s in entry["state"]]
    assert states == [
        (IDS.INSTRUCTION, "value"), (IDS.TOP, "value"), (IDS.RTG, "value"), (IDS.MODEL, "value")
    ]  # fmt: skip
    callback = entry["callback"].__wrapped__
    data, message = callback(1, "key", "key", 0.0, str(models_dir / "tiny"))
    assert message is None and data["filename"] == "key-top-key_rtg0.gif"
    assert base64.b64decode(data["content"])[:6] == b"GIF89a"
    _, message = callback(1, "key", "key", 0.0, "corrupt.pt")
    assert "corrupt.pt" in message.children
