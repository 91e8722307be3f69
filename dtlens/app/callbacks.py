"""The app's callbacks as plain functions, testable without a browser.

Each ``on_*`` / ``render_*`` function takes the app state and the values of the page's
inputs and returns a small dataclass of what to show;
:func:`dtlens.app.wiring.register_callbacks` binds them to component ids. Errors a user
can cause (a bad checkpoint, a model that does not fit the env, an edit that changes
nothing) come back as a ``message`` shown in the page, never as an exception;
unexpected ones are logged and shown the same way.

Callback graph: a key press or button (``assets/keyboard.js`` -> ``key-events``), reset or
scenario change steps the episode (:func:`on_env_input`) and bumps ``episode-version``;
that, the RTG slider and the model picker re-render the model panel
(:func:`render_model_panel`) and the visible analysis tab (:func:`render_attention`,
:func:`render_lens`, :func:`render_patching`); hidden tabs are skipped and computed when
opened. All of them share the session's cached run of the current window.

Example:
    >>> state = AppState(ModelCatalog(initial="memorydt"))  # doctest: +SKIP
    >>> out = on_env_input(state, "sid", "keys", {"events": [{"id": 1, "action": 2}]},
    ...                    "key", "ball", 0.9, "memorydt")  # doctest: +SKIP
    >>> out.trajectory  # doctest: +SKIP
    ['1 forward']
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, TypeVar

import plotly.graph_objects as go
from dash import Patch
from jaxtyping import Float
from torch import Tensor

from dtlens.app import tabs, validation, views
from dtlens.app.layout import IDS
from dtlens.app.models import ModelCatalog
from dtlens.app.session import ContextRun, EpisodeSession, SessionStore
from dtlens.env import Scenario
from dtlens.errors import DTLensError
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.plotting.patching import greyed_out, metric_gaps

__all__ = [
    "AppState",
    "EnvOutput",
    "ModelOutput",
    "TabOutput",
    "model_shape",
    "on_env_input",
    "render_attention",
    "render_lens",
    "render_model_panel",
    "render_patching",
]

log = logging.getLogger("dtlens.app")
T = TypeVar("T")


@dataclass
class AppState:
    """What a running app keeps on the server: its models and its pages' sessions.

    Args:
        catalog: the models the picker offers.
        sessions: the pages' episodes (made empty by default).
    """

    catalog: ModelCatalog
    sessions: SessionStore = field(default_factory=SessionStore)

    def display_run(
        self, session: EpisodeSession, model_value: str, rtg: float, hooks: bool = True
    ) -> tuple[HookedDecisionTransformer, ContextRun]:
        """The picked model and its run of the current window, caching the hooks the
        attention and lens tabs read (``display_hooks``), or none with ``hooks=False``.

        The model panel, "follow the model" and every tab read this one run (the panel
        and the visible tab are computed in parallel; the session's lock lets the first
        compute it and the other reuse it). With the patching tab visible nothing reads
        the hooks (the tab runs its own forwards), and a plain forward is cheaper.
        """
        model, run, _ = self.display_runs(session, model_value, rtg, None, hooks)
        return model, run

    def display_runs(
        self,
        session: EpisodeSession,
        model_value: str,
        rtg: float,
        rtg_b: float | None,
        hooks: bool = True,
    ) -> tuple[HookedDecisionTransformer, ContextRun, ContextRun | None]:
        """:meth:`display_run` and, for a model with RTG tokens, the run at ``rtg_b`` (the
        attention tab's second RTG; None: no second run), both from one forward.

        With the attention tab open the model panel and the tab both ask for both runs,
        so whichever comes first computes the two windows as one batch and the other
        reuses them.
        """
        model = self.catalog.get(model_value)
        lock = self.catalog.forward_lock(model)
        names = tabs.display_hooks(model) if hooks else ()
        rtgs = (validation.check_rtg(rtg),)
        if rtg_b is not None and model.cfg.model_type == "decision_transformer":
            rtgs += (validation.check_rtg(rtg_b),)
        runs = session.context_runs(model, model_value, rtgs, names, lock)
        return model, runs[0], runs[1] if len(runs) > 1 else None


@dataclass
class EnvOutput:
    """What the environment panel shows after a key press, reset or scenario change."""

    full: go.Figure | Patch
    pov: go.Figure | Patch
    status: str
    trajectory: list[str]
    episode: dict[str, Any]
    message: str | None = None


@dataclass
class ModelOutput:
    """What the model panel shows for the current window, RTG and model."""

    figure: go.Figure | views.FigureSpec
    probs: Float[Tensor, " action"] | None = None
    tokens: list[views.TokenView] = field(default_factory=list)
    info: str = ""
    message: str | None = None


@dataclass
class TabOutput:
    """The figures of one analysis tab and its message (error or summary).

    ``shown`` is the key of what the figures were built for (model, layer, RTGs, window
    length ...), which the page stores and sends back with its next request: while it is
    unchanged, a key press only sends the figures' new values (``dash.Patch``). None when
    the figures are placeholders.
    """

    figures: tuple[go.Figure | views.FigureSpec | Patch, ...]
    message: str | None = None
    kind: str = "error"
    shown: str | None = None


# ------------------------------------------------------------------ plain callbacks
def on_env_input(
    state: AppState,
    session_id: str,
    trigger: str | None,
    key_events: dict[str, Any] | None,
    instruction: str,
    top: str,
    rtg: float,
    model_value: str | None,
    patch_frames: bool = False,
) -> EnvOutput:
    """Apply a page input to its episode and render the environment panel.

    Args:
        state: the app state.
        session_id: the page's session id.
        trigger: ``"keys"`` (new key/button events), ``"reset"``, ``"scenario"`` (a radio
            changed: reset in the new layout) or None (first render).
        key_events: ``{"events": [{"id": int, "action": int} | {"id": int, "follow": True}]}``
            from ``assets/keyboard.js``; only events not applied yet are taken.
        instruction: the instruction radio's value.
        top: the upper-target radio's value.
        rtg: the RTG slider (used by "follow the model").
        model_value: the picked model (used by "follow the model").
        patch_frames: return the two grids as ``dash.Patch`` updates of the image pixels
            (for a page that already shows the figures) instead of whole figures.
    """
    session = state.sessions.get(session_id)
    message = None
    with session.lock:
        try:
            if trigger in ("reset", "scenario"):
                session.reset(Scenario(instruction, top))
            elif trigger == "keys":
                for event in session.new_events(validation.key_events(key_events)):
                    session.step(_event_action(state, session, event, rtg, model_value))
        except DTLensError as err:
            message = str(err)
        if patch_frames:
            full, pov = (views.pixels_patch(rgb) for rgb in session.frames())
        else:
            full, pov = views.grid_figures(session)
        return EnvOutput(
            full=full,
            pov=pov,
            status=views.episode_status(session),
            trajectory=views.trajectory_steps(session),
            episode={"session": session_id, "version": session.version, "done": session.done},
            message=message,
        )


def render_model_panel(
    state: AppState,
    session_id: str,
    rtg: float,
    model_value: str | None,
    tab: str | None = None,
    rtg_b: float | None = None,
) -> ModelOutput:
    """The model's action distribution for the next step, and its context window.

    ``tab`` is the visible analysis tab (an ``IDS.TAB_*`` value, None if unknown): with
    the patching tab the run caches no hooks (nothing reads them); with the attention
    tab the run at the tab's second RTG ``rtg_b`` is computed in the same forward (see
    :meth:`AppState.display_runs`).

    Errors (no model, a bad or incompatible checkpoint, a window the model cannot read)
    come back in ``message`` with a placeholder figure.
    """
    session = state.sessions.get(session_id)

    def compute() -> ModelOutput:
        second = rtg_b if tab == IDS.TAB_ATTENTION and validation.is_number(rtg_b) else None
        model, run, _ = state.display_runs(
            session, model_value, rtg, second, tab != IDS.TAB_PATCHING
        )
        probs = views.current_probabilities(model, run)
        return ModelOutput(
            figure=views.probability_figure(probs, title=f"Next action (RTG {run.rtg:.2f})"),
            probs=probs,
            tokens=views.context_tokens(model, run),
            info=views.model_summary(model),
        )

    return validation.guard(
        compute, lambda msg: ModelOutput(views.placeholder_figure(), message=msg)
    )


def model_shape(state: AppState, model_value: str | None) -> tuple[int, int]:
    """``(n_layers, n_heads)`` of the picked model, for the layer and head dropdowns;
    ``(0, 0)`` when it cannot be loaded (the model panel shows why).

    Example:
        >>> model_shape(AppState(ModelCatalog(initial="memorydt")), "memorydt")  # doctest: +SKIP
        (3, 4)
    """
    try:
        model = state.catalog.get(model_value)
    except DTLensError:
        return 0, 0
    return model.cfg.n_layers, model.cfg.n_heads


def render_attention(
    state: AppState,
    session_id: str,
    rtg: float,
    model_value: str | None,
    layer: int | None,
    head: int | None,
    rtg_b: float | None,
    all_heads: bool = False,
    shown: str | None = None,
) -> TabOutput:
    """Attention of one head at the slider's RTG and at ``rtg_b`` side by side, and (with
    ``all_heads``) every head of its layer. A layer or head of None (not picked yet) is 0.

    ``shown`` is the page's ``TabOutput.shown`` of its last attention figures (None if
    it has none). When it equals the key of the figures wanted now (same model, layer,
    head, RTGs and window length: only the trajectory changed), the figures come back as
    ``dash.Patch`` updates of their heatmap values and titles, as rebuilding the figures
    is the slowest part of a key press. The key comes from the page, not from what the
    server last sent, so a response the browser dropped (superseded by a newer press)
    never leaves a patch without its figure.
    """
    session = state.sessions.get(session_id)

    def compute() -> TabOutput:
        model, run, run_b = state.display_runs(session, model_value, rtg, rtg_b)
        layer_ = validation.pick_index(layer, model.cfg.n_layers, "layer")
        head_ = validation.pick_index(head, model.cfg.n_heads, "head")
        rtg_b_ = None if run_b is None else run_b.rtg
        key = views.figure_key(
            model_value, id(model), layer_, head_, run.rtg, rtg_b_, all_heads, run.batch.n_steps
        )
        hint = views.placeholder_figure("tick 'every head of the layer' to draw them all")
        with session.lock:
            sent = session.figures.get("attention")
            if shown == key and sent is not None and sent[0] == key:
                pair, heads = tabs.attention_values(model, run, layer_, head_, run_b, all_heads)
                single_fig, heads_fig = sent[1]
                patches = (
                    views.heatmap_patch(single_fig, pair),
                    hint if heads_fig is None else views.heatmap_patch(heads_fig, heads),
                )
                return TabOutput(patches, shown=key)
            single, heads_fig = tabs.attention_figures(model, run, layer_, head_, run_b, all_heads)
            session.figures["attention"] = (key, (single, heads_fig))
            return TabOutput((single, hint if heads_fig is None else heads_fig), shown=key)

    def on_error(message: str) -> TabOutput:
        return TabOutput(_placeholders(2), message)  # shown=None: the page has no figures

    return validation.guard(compute, on_error)


def render_lens(
    state: AppState,
    session_id: str,
    rtg: float,
    model_value: str | None,
    action_a: int,
    action_b: int,
) -> TabOutput:
    """Logit lens and direct logit attribution of ``logit(a) - logit(b)`` at the last state."""
    session = state.sessions.get(session_id)

    def compute() -> TabOutput:
        model, run = state.display_run(session, model_value, rtg)
        return TabOutput(tabs.lens_figures(model, run, action_a, action_b))

    return validation.guard(compute, lambda msg: TabOutput(_placeholders(2), msg))


def render_patching(
    state: AppState,
    session_id: str,
    rtg: float,
    model_value: str | None,
    edit: str,
    edit_rtg: float,
    action_a: int,
    action_b: int,
    shown: str | None = None,
    mode: str = "exact",
) -> TabOutput:
    """Activation patching of the window against its edit (cached until the next step).

    With ``shown`` equal to the key of the figures wanted now (same model, edit, actions,
    mode and window length), they come back as ``dash.Patch`` updates of their values
    (as in :func:`render_attention`). ``mode`` is ``"exact"`` (activation patching) or
    ``"attribution"`` (its first-order estimate, :data:`~dtlens.app.tabs.PATCH_MODES`).
    """
    session = state.sessions.get(session_id)

    def compute() -> TabOutput:
        validation.check_settings(
            {"edit": edit, "action a": action_a, "action b": action_b, "mode": mode}
        )
        model, run = state.display_run(session, model_value, rtg, hooks=False)
        settings = (
            model_value, id(model), run.rtg, edit, validation.check_rtg(edit_rtg),
            action_a, action_b, mode,
        )  # fmt: skip

        def sweep() -> tuple:
            with state.catalog.forward_lock(model):  # innermost (memo holds the session lock)
                return tabs.patching_results(
                    model, run, edit, validation.check_rtg(edit_rtg), action_a, action_b, mode
                )

        by_pos, by_head, summary = session.memo(("patching", *settings), sweep)
        # a greyed figure states its gap: while greyed, a new gap sends whole figures
        gaps = metric_gaps(by_pos) or [0.0]
        greyed = round(sum(gaps) / len(gaps), 3) if greyed_out(by_pos) else None
        key = views.figure_key(*settings, run.batch.n_steps, greyed)
        with session.lock:
            sent = session.figures.get("patching")
            if shown == key and sent is not None and sent[0] == key:
                figures = tuple(
                    views.heatmap_patch(fig, [result.values])
                    for fig, result in zip(sent[1], (by_pos, by_head), strict=True)
                )
            else:
                figures = tabs.patching_figures(by_pos, by_head)
                session.figures["patching"] = (key, figures)
        return TabOutput(figures, summary, kind="info", shown=key)

    def on_error(message: str) -> TabOutput:
        return TabOutput(_placeholders(2), message)  # shown=None: the page has no figures

    return validation.guard(compute, on_error)


# ----------------------------------------------------------------------- helpers
def _event_action(
    state: AppState,
    session: EpisodeSession,
    event: dict[str, Any],
    rtg: float,
    model_value: str | None,
) -> int:
    """The action of a key/button event: its own, or the model's argmax for "follow"."""
    if event.get("follow"):
        model, run = state.display_run(session, model_value, rtg, hooks=False)
        return views.greedy_action(model, run)
    return event.get("action")


def _placeholders(n: int) -> tuple[views.FigureSpec, ...]:
    return tuple(views.placeholder_figure() for _ in range(n))
