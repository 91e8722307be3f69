"""The app's callbacks and views, called directly (no browser, no server).

Expectations are independent of the app: a separately stepped env, the model's own
``action_logits`` on a window built with ``history_batch`` + ``pad_context``, the cached
attention patterns of a separate forward, the model's logits for the DLA total.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image

pytest.importorskip("dash")

from dash import Patch

import dtlens
from dtlens.analysis.edits.observations import set_rtg
from dtlens.analysis.edits.routine import history_batch
from dtlens.app import layout, tabs, validation, views
from dtlens.app.callbacks import (
    AppState,
    on_env_input,
    render_attention,
    render_lens,
    render_model_panel,
    render_patching,
)
from dtlens.app.layout import IDS
from dtlens.app.models import ModelCatalog, list_checkpoints
from dtlens.app.server import create_app
from dtlens.app.session import EpisodeSession, SessionStore
from dtlens.env import MEMORY_ENV_ID, Scenario, make_env
from dtlens.errors import CheckpointError, ConfigError, EnvError
from dtlens.plotting import patching as patching_plots
from dtlens.plotting import style
from tests.conftest import build_model
from tests.unit.app_pages import find_component

LEFT, RIGHT, FORWARD = 0, 1, 2
TINY = "tiny/"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """A models folder: a tiny model, one padding-as-tokens, a corrupt .pt, a broken
    directory, a model with the wrong action count; plus a checkpoint outside it."""
    root = tmp_path_factory.mktemp("app")
    folder = root / "models"
    folder.mkdir()
    dtlens.save(build_model(), folder / "tiny")
    dtlens.save(build_model(), folder / "tokens", metadata={"context_padding": "tokens"})
    dtlens.save(build_model(n_actions=3), folder / "three_actions")
    (folder / "corrupt.pt").write_bytes(b"this is not a torch file")
    broken = folder / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    (broken / "model.safetensors").write_bytes(b"junk")
    (folder / "notes.txt").write_text("not a checkpoint")
    dtlens.save(build_model(), root / "outside")
    (folder / "escape").symlink_to(root / "outside", target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def catalog(models_dir) -> ModelCatalog:
    return ModelCatalog(models_dir=models_dir)


@pytest.fixture
def state(catalog) -> AppState:
    return AppState(catalog)


def press(state, sid, *actions, start_id=1, model=TINY, rtg=0.9):
    """Send key events (action ints, or "follow") as one request, as keyboard.js does."""
    events = [
        {"id": start_id + i, **({"follow": True} if a == "follow" else {"action": a})}
        for i, a in enumerate(actions)
    ]
    return on_env_input(state, sid, "keys", {"events": events}, "key", "ball", rtg, model)


def expected_probs(model, session, rtg):
    """The model's next-action distribution on the session's history, built independently."""
    window = history_batch(
        np.stack(session.images), session.actions, [rtg] * session.n_steps, model.cfg.n_timesteps
    )
    with torch.no_grad():
        return model.action_logits(model.pad_context(window))[0, -1].softmax(-1)


# --------------------------------------------------------------------------- environment
def test_key_presses_move_the_agent_as_the_env_would(state):
    actions = [FORWARD, FORWARD, LEFT, FORWARD, RIGHT, RIGHT, FORWARD]
    out = press(state, "s", *actions)
    env = make_env(MEMORY_ENV_ID, max_steps=50, one_hot=False)
    obs, _ = env.reset(seed=0, options={"instruction": "key", "top": "ball"})
    images = [obs["image"]]
    for action in actions:
        images.append(env.step(action)[0]["image"])
    session = state.sessions.get("s")
    assert np.array_equal(np.stack(session.images), np.stack(images))
    pose = (*env.unwrapped.agent_pos, env.unwrapped.agent_dir)
    assert session.agent_pose == tuple(int(v) for v in pose)
    assert out.trajectory == [
        "1 forward", "2 forward", "3 left", "4 forward", "5 right", "6 right", "7 forward"
    ]  # fmt: skip
    assert f"agent at ({pose[0]}, {pose[1]})" in out.status and "step 7 of 50" in out.status
    # the rendered frames are the env's own renders of that state
    frame = env.unwrapped.get_pov_render(tile_size=32)
    assert np.array_equal(png_pixels(out.pov.data[0].source), frame)
    assert out.message is None


def test_after_the_first_render_a_key_sends_only_new_pixels(state):
    first = on_env_input(state, "px", None, None, "key", "ball", 0.9, TINY)
    assert first.full.data[0].type == "image"  # whole figures on the first render
    out = on_env_input(
        state, "px", "keys", {"events": [{"id": 1, "action": FORWARD}]}, "key", "ball", 0.9,
        TINY, patch_frames=True,
    )  # fmt: skip
    env = make_env(MEMORY_ENV_ID, max_steps=50, one_hot=False)
    env.reset(seed=0, options={"instruction": "key", "top": "ball"})
    env.step(FORWARD)
    expected = {
        "full": env.unwrapped.get_full_render(highlight=True, tile_size=32),
        "pov": env.unwrapped.get_pov_render(tile_size=32),
    }
    for name, rgb in expected.items():
        (operation,) = getattr(out, name).to_plotly_json()["operations"]
        assert operation["location"] == ["data", 0, "source"]
        assert np.array_equal(png_pixels(operation["params"]["value"]), rgb)  # lossless
        assert len(operation["params"]["value"]) < rgb.nbytes / 20  # PNG, not raw pixels


def test_each_event_is_applied_once_even_when_requests_repeat_or_merge(state):
    press(state, "merge", FORWARD, FORWARD)  # ids 1, 2
    press(state, "merge", FORWARD, FORWARD, RIGHT, start_id=1)  # ids 1-3 again: only 3 is new
    assert state.sessions.get("merge").actions == [FORWARD, FORWARD, RIGHT]


def test_reset_and_scenario_change_start_a_new_episode(state):
    press(state, "r", FORWARD, FORWARD)
    out = on_env_input(state, "r", "scenario", None, "ball", "key", 0.9, TINY)
    session = state.sessions.get("r")
    assert session.actions == [] and session.scenario == Scenario("ball", "key")
    assert out.status.startswith("ball/top-key: step 0")
    env = make_env(MEMORY_ENV_ID, max_steps=50, one_hot=False)
    obs, _ = env.reset(seed=0, options={"instruction": "ball", "top": "key"})
    assert np.array_equal(session.images[0], obs["image"])


def test_a_finished_episode_ignores_keys_until_reset(state):
    # key/top-ball: the matching target is the bottom one -> 4 forward, right, forward
    out = press(state, "done", FORWARD, FORWARD, FORWARD, FORWARD, RIGHT, FORWARD, FORWARD)
    session = state.sessions.get("done")
    assert session.terminated and len(session.actions) == 6
    assert "Episode over (reached the matching target, reward 0.892)" in out.status
    assert out.episode["done"] is True


def test_a_bad_action_is_reported_not_raised(state):
    out = on_env_input(state, "bad", "keys", {"events": [{"id": 1, "action": 9}]}, "key", "ball",
                       0.9, TINY)  # fmt: skip
    assert "action 9 is outside 0..6" in out.message
    assert state.sessions.get("bad").actions == []


# -------------------------------------------------------------------------------- model
@pytest.mark.parametrize("model_value", [TINY, "tokens/"])
def test_probabilities_shown_are_the_models_softmax(state, catalog, model_value):
    model = catalog.get(model_value)
    sid = f"p-{model_value}"
    for n_steps in (0, 2, 6):  # shorter, then longer than the 4-step context
        if n_steps:
            press(state, sid, *[FORWARD, RIGHT, LEFT] * 2, model=model_value)
        session = state.sessions.get(sid)
        out = render_model_panel(state, sid, 0.9, model_value)
        assert out.message is None
        expected = expected_probs(model, session, 0.9)
        torch.testing.assert_close(out.probs, expected)
        torch.testing.assert_close(
            torch.tensor(out.figure["data"][0]["y"]), expected, atol=1e-6, rtol=0
        )
        table = layout.probability_table(out.probs)
        cells = [td.children for td in table.children[1].children]
        assert cells == [f"{float(p):.3f}" for p in expected]


def test_rtg_slider_sets_every_rtg_token(state, catalog):
    model = catalog.get(TINY)
    press(state, "rtg", FORWARD)  # 2 real steps, 2 padding steps in the 4-step window
    at_09 = render_model_panel(state, "rtg", 0.9, TINY)
    at_02 = render_model_panel(state, "rtg", 0.2, TINY)
    session = state.sessions.get("rtg")
    run = session.context_run(model, TINY, 0.2, hooks=())
    assert run.batch.n_steps == 4 and run.n_real == 2
    assert torch.equal(run.batch.rtg, torch.full((1, 4), 0.2))
    torch.testing.assert_close(at_02.probs, expected_probs(model, session, 0.2))
    assert not torch.allclose(at_02.probs, at_09.probs)
    # the RTG tokens of the context strip all show the slider's value, padding included
    rtg_tokens = [t for t in at_02.tokens if t.kind == "rtg"]
    assert [t.detail for t in rtg_tokens] == ["0.20"] * 4
    assert [t.padding for t in rtg_tokens] == [True, True, False, False]


def test_context_strip_labels_the_window(state, catalog):
    press(state, "ctx", FORWARD, LEFT)
    out = render_model_panel(state, "ctx", 0.9, TINY)
    model = catalog.get(TINY)
    labels = model.token_labels(4)
    assert [t.label for t in out.tokens] == labels
    actions = [t.detail for t in out.tokens if t.kind == "action"]
    assert actions == ["pad", "forward", "left"]  # A1 is padding, then the two actions taken
    states = [t.detail for t in out.tokens if t.kind == "state"]
    assert states == ["t=0", "t=0", "t=1", "t=2"]


def test_follow_the_model_takes_its_most_likely_action(state, catalog):
    model = catalog.get(TINY)
    press(state, "follow", FORWARD)
    session = state.sessions.get("follow")
    wanted = int(expected_probs(model, session, 0.4).argmax())
    press(state, "follow", "follow", start_id=2, rtg=0.4)
    assert session.actions == [FORWARD, wanted]


# ---------------------------------------------------------------------------- models
def test_picker_lists_checkpoints_in_the_folder(models_dir, catalog):
    assert list_checkpoints(models_dir) == [
        "broken/", "corrupt.pt", "three_actions/", "tiny/", "tokens/"
    ]  # fmt: skip
    assert catalog.default_value == "broken/"
    with pytest.raises(CheckpointError, match="does not exist or is not a directory"):
        ModelCatalog(models_dir=models_dir / "missing")


@pytest.mark.parametrize("value", ["../outside", "escape/", "/etc/passwd", "tiny/../../outside"])
def test_paths_outside_the_models_folder_are_refused(models_dir, value):
    loaded = []
    catalog = ModelCatalog(models_dir=models_dir, loader=lambda p: loaded.append(p))
    with pytest.raises(CheckpointError, match="is outside the models folder"):
        catalog.get(value)
    out = render_model_panel(AppState(catalog), "outside", 0.9, value)
    assert "is outside the models folder" in out.message and out.probs is None
    assert loaded == []  # nothing was ever loaded


def test_only_the_initial_model_without_a_folder(models_dir):
    catalog = ModelCatalog(initial=str(models_dir / "tiny"))
    assert [o.value for o in catalog.options()] == [str(models_dir / "tiny")]
    with pytest.raises(CheckpointError, match="without --models-dir"):
        catalog.resolve(str(models_dir / "tokens"))
    with pytest.raises(ConfigError, match="needs a model"):
        ModelCatalog()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("corrupt.pt", "is not a readable torch file"),
        ("broken/", "is not valid JSON"),
        ("three_actions/", "this model has n_actions=3, but the Memory env has 7 actions"),
        ("missing.pt", "does not exist in the models folder"),
    ],
)
def test_bad_checkpoints_show_an_error_in_every_panel(state, value, expected):
    model_out = render_model_panel(state, "err", 0.9, value)
    assert expected in model_out.message and model_out.probs is None
    assert model_out.figure["data"] == []  # a placeholder, not a stale plot
    for out in (
        render_attention(state, "err", 0.9, value, 0, 0, 0.0),
        render_lens(state, "err", 0.9, value, 0, 1),
        render_patching(state, "err", 0.9, value, "rtg", 0.0, 0, 1),
    ):
        assert expected in out.message and len(out.figures) == 2
    env_out = press(state, "err", "follow", model=value)
    assert expected in env_out.message and state.sessions.get("err").actions == []


# ------------------------------------------------------------------------------ tabs
def test_attention_tab_shows_the_cached_patterns_at_both_rtgs(state, catalog):
    model = catalog.get(TINY)
    press(state, "att", FORWARD, FORWARD)
    out = render_attention(state, "att", 0.9, TINY, 1, 2, 0.1, all_heads=True)
    assert out.message is None
    pair, heads = out.figures
    session = state.sessions.get("att")
    for rtg, panel in ((0.9, 0), (0.1, 1)):
        window = history_batch(np.stack(session.images), session.actions, [rtg] * 3, 4)
        with torch.no_grad():
            _, cache = model.run_with_cache(model.pad_context(window))
        pattern = cache["blocks.1.attn.hook_pattern"][0, 2].double().numpy()
        shown = np.asarray(pair.data[panel].z, dtype=float)
        lower = np.tril_indices(pattern.shape[0])
        np.testing.assert_allclose(shown[lower], pattern[lower], atol=1e-6)
        assert np.isnan(shown[np.triu_indices(pattern.shape[0], k=1)]).all()
        if rtg == 0.9:
            np.testing.assert_allclose(np.asarray(heads.data[2].z)[lower], pattern[lower], 1e-6)
    assert list(pair.data[0].x) == model.token_labels(4)


def test_after_a_key_press_attention_figures_are_patched_with_new_patterns(state, catalog):
    model = catalog.get(TINY)
    first = render_attention(state, "inc", 0.9, TINY, 0, 1, 0.0)
    assert first.figures[0].data[0].type == "heatmap"  # nothing on the page yet: a figure
    assert first.shown is not None
    press(state, "inc", FORWARD, LEFT)
    # a page that never received the first figures (its response was superseded) still
    # gets whole figures, though the server built them
    dropped = render_attention(state, "inc", 0.9, TINY, 0, 1, 0.0, shown=None)
    assert isinstance(dropped.figures[0], go.Figure) and dropped.shown == first.shown
    out = render_attention(state, "inc", 0.9, TINY, 0, 1, 0.0, shown=first.shown)
    assert isinstance(out.figures[0], Patch) and out.shown == first.shown
    ops = out.figures[0].to_plotly_json()["operations"]
    z = {op["location"][1]: op["params"]["value"] for op in ops if op["location"][0] == "data"}
    titles = {tuple(op["location"]): op["params"]["value"] for op in ops}
    session = state.sessions.get("inc")
    for panel, rtg in enumerate((0.9, 0.0)):
        window = history_batch(np.stack(session.images), session.actions, [rtg] * 3, 4)
        with torch.no_grad():
            _, cache = model.run_with_cache(model.pad_context(window))
        expected = cache["blocks.0.attn.hook_pattern"][0, 1].double().numpy()
        expected[np.triu_indices(11, k=1)] = np.nan  # the future stays empty
        np.testing.assert_allclose(np.asarray(z[panel], dtype=float), expected, atol=1e-6)
    assert titles[("layout", "title", "text")] == "L0H1"
    assert titles[("layout", "annotations", 1, "text")] == "RTG 0.00"
    # another head, or a page that showed an error, gets a whole figure again
    other = render_attention(state, "inc", 0.9, TINY, 0, 2, 0.0, shown=out.shown)
    assert other.figures[0].layout.title.text == "L0H2" and other.shown != out.shown
    failed = render_attention(state, "inc", 0.9, TINY, 0, 9, 0.0, shown=other.shown)
    assert "head 9 is out of range" in failed.message and failed.shown is None
    again = render_attention(state, "inc", 0.9, TINY, 0, 2, 0.0, shown=failed.shown)
    assert again.figures[0].layout.title.text == "L0H2"


def test_lens_tab_attribution_sums_to_the_models_logit_difference(state, catalog):
    model = catalog.get(TINY)
    press(state, "lens", FORWARD)
    out = render_lens(state, "lens", 0.9, TINY, "forward", "left")
    assert out.message is None
    lens_fig, dla_fig = out.figures
    session = state.sessions.get("lens")
    window = history_batch(np.stack(session.images), session.actions, [0.9] * 2, 4)
    with torch.no_grad():
        logits = model.action_logits(model.pad_context(window))[0, -1]
    diff = float(logits[FORWARD] - logits[LEFT])
    assert float(np.sum(dla_fig.data[0].y)) == pytest.approx(diff, abs=1e-4)
    assert float(lens_fig.data[0].y[-1]) == pytest.approx(diff, abs=1e-4)  # last stage = output
    assert render_lens(state, "lens", 0.9, TINY, 1, 1).message.startswith("pick two different")


def test_patching_tab_restores_only_where_the_runs_differ(state, catalog, monkeypatch):
    # the tiny model's RTG edit moves the decision by less than MIN_GAP: drawn in colour
    # here, so that a new step patches the values (greying: the next test)
    monkeypatch.setattr(patching_plots, "MIN_GAP", 0.0)
    model = catalog.get(TINY)
    press(state, "patch", FORWARD, LEFT)
    out = render_patching(state, "patch", 0.9, TINY, "rtg", 0.0, LEFT, RIGHT)
    by_pos, by_head = out.figures
    run = state.sessions.get("patch").context_run(model, TINY, 0.9)
    with torch.no_grad():
        clean = model.action_logits(run.batch)[0, -1]
        corrupt = model.action_logits(set_rtg(run.batch, 0.0))[0, -1]
    clean_diff, corrupt_diff = (float(x[LEFT] - x[RIGHT]) for x in (clean, corrupt))
    assert f"{clean_diff:.3f} clean, {corrupt_diff:.3f} corrupt" in out.message
    values = np.asarray(by_pos.data[0].z, dtype=float)  # [layer, pos]
    labels = list(by_pos.data[0].x)
    assert labels == model.token_labels(4) and values.shape == (2, 11)
    # entering layer 0 the runs differ only at the RTG tokens: patching elsewhere restores 0
    others = [i for i, label in enumerate(labels) if not label.startswith("R")]
    np.testing.assert_allclose(values[0, others], 0.0, atol=1e-5)
    assert np.isfinite(values).all() and np.abs(values[0, [0, 3, 6, 9]]).max() > 1e-3
    assert np.asarray(by_head.data[0].z).shape == (2, 4)
    # after another key the page's figures get new values (patches), and the invariant holds
    press(state, "patch", FORWARD, start_id=3)
    out = render_patching(state, "patch", 0.9, TINY, "rtg", 0.0, LEFT, RIGHT, shown=out.shown)
    (z_op, *_) = out.figures[0].to_plotly_json()["operations"]
    assert z_op["location"] == ["data", 0, "z"]
    values = np.asarray(z_op["params"]["value"], dtype=float)
    np.testing.assert_allclose(values[0, others], 0.0, atol=1e-5)
    run = state.sessions.get("patch").context_run(model, TINY, 0.9)
    with torch.no_grad():
        clean = model.action_logits(run.batch)[0, -1]
    assert f"is {float(clean[LEFT] - clean[RIGHT]):.3f} clean" in out.message


def test_patching_a_barely_moved_decision_is_greyed_out(state, catalog):
    """The tiny model's RTG edit moves its decision by far less than MIN_GAP logits: both
    maps are greyed with the gap inside them, the message says so, and the next step
    (a new gap) sends whole figures, so the gap written on the page is never stale."""
    model = catalog.get(TINY)
    press(state, "grey", FORWARD, LEFT)
    out = render_patching(state, "grey", 0.9, TINY, "rtg", 0.0, LEFT, RIGHT)
    run = state.sessions.get("grey").context_run(model, TINY, 0.9)
    with torch.no_grad():
        clean = model.action_logits(run.batch)[0, -1]
        corrupt = model.action_logits(set_rtg(run.batch, 0.0))[0, -1]
    gap = abs(float((clean[LEFT] - clean[RIGHT]) - (corrupt[LEFT] - corrupt[RIGHT])))
    assert gap < patching_plots.MIN_GAP
    assert f"differ by only {gap:.3f} logits" in out.message and "greyed out" in out.message
    for fig in out.figures:
        assert {c for _, c in fig.data[0].colorscale} <= {c for _, c in style.GREYED}
        [note] = [a.text for a in fig.layout.annotations]
        assert f"differ by {gap:.3g} on average" in note
    press(state, "grey", FORWARD, start_id=3)
    again = render_patching(state, "grey", 0.9, TINY, "rtg", 0.0, LEFT, RIGHT, shown=out.shown)
    assert again.shown != out.shown and isinstance(again.figures[0], go.Figure)


def test_patching_an_edit_that_changes_nothing_says_so(state):
    # after 4 forward steps the instruction (behind the agent) is out of every view
    press(state, "gone", FORWARD, FORWARD, FORWARD, FORWARD)
    out = render_patching(state, "gone", 0.9, TINY, "instruction", 0.0, LEFT, RIGHT)
    assert "changes nothing in the current window" in out.message
    assert all(fig["data"] == [] for fig in out.figures)


# --------------------------------------------------------------------- session + app
def test_session_caches_runs_until_the_episode_changes(catalog):
    model = catalog.get(TINY)
    session = EpisodeSession()
    run = session.context_run(model, TINY, 0.9)
    assert session.context_run(model, TINY, 0.9, hooks=()) is run  # a full run serves all
    assert session.memo(("x",), lambda: 1) == 1 and session.memo(("x",), lambda: 2) == 1
    session.step(FORWARD)
    assert session.context_run(model, TINY, 0.9) is not run
    assert session.memo(("x",), lambda: 2) == 2
    # a run caching some hooks serves requests for fewer, not for more
    some = ("blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern")
    session.step(FORWARD)
    partial = session.context_run(model, TINY, 0.9, hooks=some)
    assert set(partial.cache.keys()) == set(some)
    assert session.context_run(model, TINY, 0.9, hooks=some[:1]) is partial
    assert session.context_run(model, TINY, 0.9, hooks=()) is partial
    assert session.context_run(model, TINY, 0.9, hooks=(*some, "hook_embed")) is not partial
    assert session.context_run(model, TINY, 0.9).cache is not None  # None = every hook


def test_the_attention_tabs_second_rtg_runs_in_the_panels_forward(state, catalog, monkeypatch):
    """With the attention tab open the model panel computes both RTGs' windows as one
    batch; the tab then runs no forward, and every value equals a separate forward."""
    model = catalog.get(TINY)
    press(state, "two", FORWARD, FORWARD)
    forwards: list[int] = []
    original = type(model).forward

    def counted(self, batch, *args, **kwargs):
        forwards.append(batch.batch_size)
        return original(self, batch, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", counted)
    panel = render_model_panel(state, "two", 0.9, TINY, tab=IDS.TAB_ATTENTION, rtg_b=0.1)
    assert forwards == [2]  # one forward, one row per RTG
    att = render_attention(state, "two", 0.9, TINY, 1, 2, 0.1)
    assert forwards == [2] and att.message is None  # the tab reused both rows
    session = state.sessions.get("two")
    torch.testing.assert_close(panel.probs, expected_probs(model, session, 0.9))
    for rtg, panel_index in ((0.9, 0), (0.1, 1)):
        window = history_batch(np.stack(session.images), session.actions, [rtg] * 3, 4)
        with torch.no_grad():
            logits = original(model, model.pad_context(window))
            _, cache = model.run_with_cache(model.pad_context(window))
        run = session.context_run(model, TINY, rtg, hooks=tabs.display_hooks(model))
        assert run.rtg == rtg and run.batch.batch_size == 1
        torch.testing.assert_close(run.logits, logits, atol=1e-6, rtol=1e-5)
        pattern = cache["blocks.1.attn.hook_pattern"][:, 2]
        torch.testing.assert_close(run.cache["blocks.1.attn.hook_pattern"][:, 2], pattern)
        shown = np.asarray(att.figures[0].data[panel_index].z, dtype=float)
        lower = np.tril_indices(pattern.shape[-1])
        np.testing.assert_allclose(shown[lower], pattern[0].double().numpy()[lower], atol=1e-6)
    # the panel ignores a second RTG the tab would refuse, and a tab that is not attention
    forwards.clear()
    press(state, "two", FORWARD, start_id=3)
    render_model_panel(state, "two", 0.9, TINY, tab=IDS.TAB_ATTENTION, rtg_b=float("nan"))
    render_model_panel(state, "two", 0.5, TINY, tab=IDS.TAB_LENS, rtg_b=0.1)
    assert forwards == [1, 1]


def test_with_the_patching_tab_visible_the_panel_runs_a_plain_forward(state, catalog):
    model = catalog.get(TINY)
    press(state, "plain", FORWARD)
    out = render_model_panel(state, "plain", 0.9, TINY, tab=IDS.TAB_PATCHING)
    session = state.sessions.get("plain")
    run = session.context_run(model, TINY, 0.9, hooks=())
    assert run.cache is None  # the panel's own run: no hooks were cached
    torch.testing.assert_close(out.probs, expected_probs(model, session, 0.9))
    # opening the attention tab then runs the forward with the hooks it reads
    att = render_attention(state, "plain", 0.9, TINY, 0, 0, None)
    assert att.message is None and session.context_run(model, TINY, 0.9, hooks=()).cache


def test_every_forward_holds_the_models_lock_so_pages_can_share_a_model(models_dir):
    """Hooks live on the model's modules: forwards of two pages (or two parallel callbacks)
    on one model must not interleave. Every forward the app runs holds the model's lock."""
    state = AppState(ModelCatalog(models_dir=models_dir))
    model = state.catalog.get(TINY)
    lock = state.catalog.forward_lock(model)
    held = []
    unembed = dict(model.named_modules())["core.unembed._original_component"]  # every forward
    handle = unembed.register_forward_pre_hook(lambda *_: held.append(_held_by_another(lock)))
    try:
        press(state, "lock", FORWARD, "follow")
        render_model_panel(state, "lock", 0.9, TINY)
        render_attention(state, "lock", 0.9, TINY, 0, 0, 0.2)
        out = render_patching(state, "lock", 0.9, TINY, "rtg", 0.0, LEFT, RIGHT)
    finally:
        handle.remove()
    assert out.kind == "info" and len(held) >= 4 and all(held)
    assert state.catalog.forward_lock(model) is lock

    # two pages hammering one model from threads get what one page alone gets
    def page(sid, errors):
        try:
            for i in range(3):
                press(state, sid, FORWARD if i % 2 else LEFT, start_id=i + 1)
                panel = render_model_panel(state, sid, 0.9, TINY)
                patch = render_patching(state, sid, 0.9, TINY, "rtg", 0.0, LEFT, RIGHT)
                assert panel.message is None and patch.kind == "info", patch.message
                session = state.sessions.get(sid)
                torch.testing.assert_close(panel.probs, expected_probs(model, session, 0.9))
        except Exception as err:  # reported in the main thread
            errors.append(err)

    errors = []
    threads = [threading.Thread(target=page, args=(f"t{i}", errors)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_session_store_drops_the_least_recently_used():
    store = SessionStore(max_sessions=2)
    a = store.get("a")
    store.get("b")
    store.get("a")
    store.get("c")  # drops b
    assert len(store) == 2 and store.get("a") is a


def test_create_app_serves_one_session_per_visit(models_dir):
    app = create_app(model=str(models_dir / "tiny"), models_dir=models_dir)
    first, second = app.layout(), app.layout()
    assert first.children[0].id == IDS.SESSION
    assert first.children[0].data != second.children[0].data
    picker = find_component(first, IDS.MODEL)
    assert picker.value == str(models_dir / "tiny")
    assert [o["value"] for o in picker.options][1:] == list_checkpoints(models_dir)
    with pytest.raises(ConfigError, match="either catalog"):
        create_app(model="memorydt", catalog=ModelCatalog(initial="memorydt"))
    # every output the callbacks return serialises to JSON the way Dash sends it
    state = AppState(ModelCatalog(models_dir=models_dir))
    out = on_env_input(state, "json", None, None, "key", "ball", 0.9, TINY)
    model_out = render_model_panel(state, "json", 0.9, TINY)
    payload = [
        out.full,
        out.pov,
        layout.trajectory_list(out.trajectory),
        model_out.figure,
        layout.token_strip(model_out.tokens),
        layout.probability_table(model_out.probs),
    ]
    assert json.loads(_to_json(payload))


def test_cli_app_parser_binds_localhost_by_default():
    import argparse

    from dtlens.cli import app as cli_app

    parser = argparse.ArgumentParser()
    cli_app.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["app"])
    assert (args.host, args.port, args.model, args.models_dir) == ("127.0.0.1", 8050, None, None)
    args = parser.parse_args(["app", "--port", "0"])
    with pytest.raises(ConfigError, match=r"--port must be in 1\.\.65535"):
        cli_app.run(args)


def test_cli_app_model_may_be_a_folder_or_one_of_its_entries(models_dir, tmp_path):
    from dtlens.cli.app import models_to_serve

    assert models_to_serve(None, None) == ("memorydt", None)
    # a folder of checkpoints given as --model serves that folder ...
    assert models_to_serve(str(models_dir), None) == (None, str(models_dir))
    # ... but a checkpoint directory is the model itself
    tiny = str(models_dir / "tiny")
    assert models_to_serve(tiny, None) == (tiny, None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        models_to_serve(None, str(tmp_path / "empty"))
    # with a folder, --model may name one of its entries (with or without the slash)
    for name in ("tiny", TINY):
        catalog = ModelCatalog(models_dir=models_dir, initial=name)
        assert catalog.default_value == TINY
        assert [o.value for o in catalog.options()].count(TINY) == 1
        assert catalog.resolve(TINY) == (models_dir / "tiny").resolve()
    assert ModelCatalog(models_dir=models_dir, initial="memorydt").resolve("memorydt") == "memorydt"


def test_views_only_describe_the_session():
    session = EpisodeSession(Scenario("ball", "ball"))
    assert views.trajectory_steps(session) == []
    assert views.episode_status(session).startswith("ball/top-ball: step 0 of 50, agent at (1, 3)")
    full, _ = views.grid_figures(session)
    rgb = session.env.unwrapped.get_full_render(highlight=True, tile_size=32)
    assert np.array_equal(png_pixels(full.data[0].source), rgb)


def test_the_value_checks_callbacks_and_the_gif_button_share(caplog):
    assert validation.check_rtg(1) == 1.0 and type(validation.check_rtg(1)) is float
    for bad in (None, True, "0.9", float("nan"), float("inf"), [0.9]):
        assert not validation.is_number(bad)
        with pytest.raises(ConfigError, match=r"the RTG must be a finite number, got "):
            validation.check_rtg(bad)
    assert validation.pick_index(None, 3, "head") == 0 and validation.pick_index(2, 3, "head") == 2
    for bad, says in (
        (3, r"head 3 is out of range: the model has 3 heads \(0\.\.2\)"),
        (True, "head must be an int in 0..2"),
        ("1", "head must be an int"),
    ):
        with pytest.raises(ConfigError, match=says):
            validation.pick_index(bad, 3, "head")
    assert validation.key_events(None) == [] and validation.key_events({"events": None}) == []
    for bad in ({"events": [{"id": True}]}, {"events": "x"}, [1]):
        with pytest.raises(EnvError, match="key events must be"):
            validation.key_events(bad)
    validation.check_settings({"edit": "rtg", "rtg": 0.5})
    with pytest.raises(ConfigError, match=r"mode must be a name or number .* got \{\}"):
        validation.check_settings({"edit": "rtg", "mode": {}})
    # guard: a DTLensError is the message; anything else is logged and named a bug
    assert validation.guard(lambda: 1, str) == 1
    assert validation.guard(lambda: validation.check_rtg(None), str) == (
        "the RTG must be a finite number, got None."
    )
    with caplog.at_level("ERROR", logger="dtlens.app"):
        shown = validation.guard(lambda: 1 / 0, str, "GIF download")
    assert shown == "internal error (ZeroDivisionError: division by zero); see the server log."
    assert [r.getMessage() for r in caplog.records] == ["dtlens app GIF download failed"]


def _held_by_another(lock) -> bool:
    """Whether ``lock`` (re-entrant) is held, as seen from a second thread."""
    free = []

    def probe():
        if lock.acquire(blocking=False):
            lock.release()
            free.append(True)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return not free


def _to_json(value) -> str:
    from plotly.io.json import to_json_plotly

    return to_json_plotly(value)


def png_pixels(uri: str) -> np.ndarray:
    """The RGB pixels of a PNG data URI (an image trace's ``source``), decoded by pillow."""
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri[len(prefix) :]))).convert("RGB"))
