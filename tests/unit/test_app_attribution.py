"""The patching tab's fast mode: attribution patching, called directly (no browser, no server).

Expectations are independent of the app: the session's window rebuilt by the session,
its RTG edit by ``set_rtg``, and ``dtlens.attribution_patching`` / ``activation_patching``
run here on them.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dash")

import dtlens
from dtlens.analysis.edits.observations import set_rtg
from dtlens.analysis.metrics import make_logit_diff_metric
from dtlens.app.callbacks import AppState, on_env_input, render_patching
from dtlens.app.layout import IDS
from dtlens.app.models import ModelCatalog
from dtlens.app.server import create_app
from dtlens.app.tabs import PATCH_MODES, patching_results
from dtlens.errors import ConfigError
from tests.conftest import build_model
from tests.unit.app_pages import find_component

LEFT, RIGHT, FORWARD = 0, 1, 2
TINY = "tiny/"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("app_attribution") / "models"
    folder.mkdir()
    dtlens.save(build_model(), folder / "tiny")
    return folder


@pytest.fixture
def state(models_dir) -> AppState:
    return AppState(ModelCatalog(models_dir=models_dir))


def press(state, sid, *actions):
    events = [{"id": 1 + i, "action": a} for i, a in enumerate(actions)]
    return on_env_input(state, sid, "keys", {"events": events}, "key", "ball", 0.9, TINY)


def expected_sweeps(model, run, sweep):
    """The two sweeps of the tab, computed here on the session's window and its RTG edit."""
    clean, corrupt = run.batch, set_rtg(run.batch, 0.0)
    metric = make_logit_diff_metric(LEFT, RIGHT, -1, model=model)
    by_pos = sweep(model, clean, corrupt, metric, "resid_pre", ("layer", "pos"))
    by_head = sweep(model, clean, corrupt, metric, "z", ("layer", "head"))
    return by_pos, by_head


def test_fast_mode_shows_attribution_patchings_estimates(state):
    model = state.catalog.get(TINY)
    press(state, "fast", FORWARD, LEFT)
    out = render_patching(state, "fast", 0.9, TINY, "rtg", 0.0, LEFT, RIGHT, mode="attribution")
    assert out.kind == "info", out.message
    run = state.sessions.get("fast").context_run(model, TINY, 0.9)
    by_pos, by_head = expected_sweeps(model, run, dtlens.attribution_patching)
    pos_fig, head_fig = out.figures
    np.testing.assert_allclose(np.asarray(pos_fig.data[0].z, float), by_pos.values, atol=1e-5)
    np.testing.assert_allclose(np.asarray(head_fig.data[0].z, float), by_head.values, atol=1e-5)
    assert "attribution estimate" in pos_fig.layout.title.text
    assert "attribution estimate" in head_fig.layout.title.text
    assert "estimated to first order" in out.message
    # entering layer 0 the runs differ only at the RTG tokens: elsewhere exactly nothing
    labels = list(pos_fig.data[0].x)
    others = [i for i, label in enumerate(labels) if not label.startswith("R")]
    values = np.asarray(pos_fig.data[0].z, dtype=float)
    assert np.all(values[0, others] == 0.0) and np.abs(values[0, [0, 3, 6, 9]]).max() > 1e-3


def test_exact_mode_is_the_default_and_unchanged(state):
    model = state.catalog.get(TINY)
    press(state, "exact", FORWARD)
    default = render_patching(state, "exact", 0.9, TINY, "rtg", 0.0, LEFT, RIGHT)
    exact = render_patching(state, "exact", 0.9, TINY, "rtg", 0.0, LEFT, RIGHT, mode="exact")
    run = state.sessions.get("exact").context_run(model, TINY, 0.9)
    by_pos, by_head = expected_sweeps(model, run, dtlens.activation_patching)
    for out in (default, exact):
        pos_fig, head_fig = out.figures
        np.testing.assert_allclose(np.asarray(pos_fig.data[0].z, float), by_pos.values, atol=1e-5)
        np.testing.assert_allclose(np.asarray(head_fig.data[0].z, float), by_head.values, atol=1e-5)
        assert "attribution" not in pos_fig.layout.title.text
        assert "estimated" not in out.message
    assert default.shown == exact.shown


def test_switching_mode_sends_new_figures_not_value_patches(state):
    press(state, "switch", FORWARD, LEFT)
    exact = render_patching(state, "switch", 0.9, TINY, "rtg", 0.0, LEFT, RIGHT)
    fast = render_patching(state, "switch", 0.9, TINY, "rtg", 0.0, LEFT, RIGHT, exact.shown,
                           "attribution")  # fmt: skip
    assert fast.shown != exact.shown
    assert all(fig.data[0].type == "heatmap" for fig in fast.figures)  # whole figures
    # the same mode again, for the figures the page holds: values only
    again = render_patching(state, "switch", 0.9, TINY, "rtg", 0.0, LEFT, RIGHT, fast.shown,
                            "attribution")  # fmt: skip
    (z_op, *_) = again.figures[0].to_plotly_json()["operations"]
    assert z_op["location"] == ["data", 0, "z"]
    # estimates are close to the exact values on this tiny model, but not the same numbers
    exact_z = np.asarray(exact.figures[0].data[0].z, float)
    fast_z = np.asarray(fast.figures[0].data[0].z, float)
    assert exact_z.shape == fast_z.shape and not np.allclose(exact_z, fast_z, atol=1e-6)


def test_an_unknown_mode_is_reported(state, models_dir):
    press(state, "bad", FORWARD)
    out = render_patching(state, "bad", 0.9, TINY, "rtg", 0.0, LEFT, RIGHT, mode="fastest")
    assert "mode must be one of ['exact', 'attribution']" in out.message
    assert all(fig["data"] == [] for fig in out.figures)
    model = state.catalog.get(TINY)
    run = state.sessions.get("bad").context_run(model, TINY, 0.9)
    with pytest.raises(ConfigError, match="mode must be one of"):
        patching_results(model, run, "rtg", 0.0, LEFT, RIGHT, mode="fastest")


def test_the_page_offers_the_mode_and_the_callback_passes_it(models_dir):
    app = create_app(model=str(models_dir / "tiny"), models_dir=models_dir)
    radio = find_component(app.layout(), IDS.PATCH_MODE)
    assert [o["value"] for o in radio.options] == list(PATCH_MODES) == ["exact", "attribution"]
    assert radio.value == "exact"
    (entry,) = [v for k, v in app.callback_map.items() if f"{IDS.PATCH_POS}.figure" in k]
    assert {"id": IDS.PATCH_MODE, "property": "value"} in entry["inputs"]
    callback = entry["callback"].__wrapped__
    # (trigger, edit, edit RTG, action a, action b, mode, RTG, model, tab, session, shown)
    controls = (None, "rtg", 0.0, LEFT, RIGHT)
    page = (0.9, str(models_dir / "tiny"), IDS.TAB_PATCHING, "page", None)
    fast = callback(*controls, "attribution", *page)
    exact = callback(*controls, "exact", *page)
    assert "attribution estimate" in fast[0].layout.title.text
    assert "attribution" not in exact[0].layout.title.text
    assert fast[-1] != exact[-1]  # the figures' keys differ by mode


def test_fast_mode_runs_one_forward_per_run_and_leaves_no_gradients(state):
    """The estimate costs a clean and a corrupt forward per sweep (2 sweeps), not one per
    location, and the app's shared model gets no ``.grad``."""
    model = state.catalog.get(TINY)
    press(state, "count", FORWARD)
    state.display_run(state.sessions.get("count"), TINY, 0.9, hooks=False)  # the window's run
    calls = []
    unembed = dict(model.named_modules())["core.unembed._original_component"]  # every forward
    handle = unembed.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        out = render_patching(state, "count", 0.9, TINY, "rtg", 0.0, LEFT, RIGHT,
                              mode="attribution")  # fmt: skip
    finally:
        handle.remove()
    assert out.kind == "info" and len(calls) == 4
    assert all(p.grad is None for p in model.parameters())
