"""The app's Dash wiring: which page inputs call which plain callback, and where outputs go.

The callbacks themselves live in :mod:`dtlens.app.callbacks` and :mod:`dtlens.app.gif`
(plain functions, tested without a browser); this module only binds them to the component
ids of :class:`~dtlens.app.layout.IDS` and turns their dataclasses into components.

Dash runs the environment callback first (a key press, reset or scenario change bumps
the ``episode-version`` store), then, in parallel, the model panel and the visible
analysis tab. Each tab listens to its own trigger store, which a client-side gate sets
only while the tab is visible, so hidden tabs cost no request (they catch up when
opened); the layer and head dropdowns are filled by a callback of the model picker
alone, so the attention tab never waits for the panel. The grids and the attention /
patching heatmaps are sent whole until the page holds them (it stores the episode and
each tab's figure key with them), then as new values.

Example:
    >>> app = dash.Dash("demo")  # doctest: +SKIP
    >>> register_callbacks(app, AppState(ModelCatalog(initial="memorydt")))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, State, ctx, dcc, no_update
from dash.exceptions import PreventUpdate

from dtlens.app import layout
from dtlens.app.callbacks import (
    AppState,
    model_shape,
    on_env_input,
    render_attention,
    render_lens,
    render_model_panel,
    render_patching,
)
from dtlens.app.gif import gif_download
from dtlens.app.layout import IDS

__all__ = ["register_callbacks"]


def register_callbacks(app: Dash, state: AppState) -> None:
    """Bind the plain callbacks of :mod:`dtlens.app.callbacks` to the page's component ids."""

    @app.callback(
        Output(IDS.FULL_GRID, "figure"),
        Output(IDS.POV_GRID, "figure"),
        Output(IDS.STATUS, "children"),
        Output(IDS.TRAJECTORY, "children"),
        Output(IDS.EPISODE, "data"),
        Output(IDS.ENV_MESSAGE, "children"),
        Input(IDS.KEY_EVENTS, "data"),
        Input(IDS.RESET, "n_clicks"),
        Input(IDS.INSTRUCTION, "value"),
        Input(IDS.TOP, "value"),
        State(IDS.SESSION, "data"),
        State(IDS.RTG, "value"),
        State(IDS.MODEL, "value"),
        State(IDS.EPISODE, "data"),
    )
    def _env(key_events, _reset, instruction, top, session_id, rtg, model_value, episode):
        triggers = {
            IDS.KEY_EVENTS: "keys",
            IDS.RESET: "reset",
            IDS.INSTRUCTION: "scenario",
            IDS.TOP: "scenario",
        }
        trigger = triggers.get(ctx.triggered_id) if ctx.triggered else None
        out = on_env_input(  # figures until the page has them (it stores the episode
            state,  # with them), then only new pixels
            session_id,
            trigger,
            key_events,
            instruction,
            top,
            rtg,
            model_value,
            patch_frames=_page_has_frames(episode, session_id),
        )
        return (
            out.full,
            out.pov,
            out.status,
            layout.trajectory_list(out.trajectory),
            out.episode,
            layout.message(out.message),
        )

    @app.callback(
        Output(IDS.PROBS, "figure"),
        Output(IDS.PROBS_TABLE, "children"),
        Output(IDS.CONTEXT, "children"),
        Output(IDS.MODEL_INFO, "children"),
        Output(IDS.MODEL_MESSAGE, "children"),
        Input(IDS.EPISODE, "data"),
        Input(IDS.RTG, "value"),
        Input(IDS.MODEL, "value"),
        State(IDS.SESSION, "data"),
        State(IDS.TABS, "value"),
        State(IDS.RTG_B, "value"),
    )
    def _model(_episode, rtg, model_value, session_id, tab, rtg_b):
        out = render_model_panel(state, session_id, rtg, model_value, tab, rtg_b)
        table = None if out.probs is None else layout.probability_table(out.probs)
        return (
            out.figure,
            table,
            layout.token_strip(out.tokens),
            out.info,
            layout.message(out.message),
        )

    @app.callback(
        Output(IDS.LAYER, "options"),
        Output(IDS.LAYER, "value"),
        Output(IDS.HEAD, "options"),
        Output(IDS.HEAD, "value"),
        Input(IDS.MODEL, "value"),
        State(IDS.LAYER, "value"),
        State(IDS.HEAD, "value"),
    )
    def _index_choices(model_value, layer, head):
        # only on a model change: were these outputs of the panel's callback, the
        # attention tab (their input) would wait for the panel after every key press
        n_layers, n_heads = model_shape(state, model_value)
        return (*_index_choice(n_layers, layer), *_index_choice(n_heads, head))

    for tab, trigger in IDS.TAB_TRIGGERS.items():
        app.clientside_callback(
            _TAB_GATE.replace("TAB", tab),
            Output(trigger, "data"),
            Input(IDS.EPISODE, "data"),
            Input(IDS.RTG, "value"),
            Input(IDS.MODEL, "value"),
            Input(IDS.TABS, "value"),
        )

    @app.callback(
        Output(IDS.ATTENTION, "figure"),
        Output(IDS.ATTENTION_HEADS, "figure"),
        Output(IDS.ATTENTION_MESSAGE, "children"),
        Output(IDS.ATTENTION_SHOWN, "data"),
        Input(IDS.TAB_TRIGGERS[IDS.TAB_ATTENTION], "data"),
        Input(IDS.LAYER, "value"),
        Input(IDS.HEAD, "value"),
        Input(IDS.RTG_B, "value"),
        Input(IDS.ALL_HEADS, "value"),
        *_TAB_STATES,
        State(IDS.SESSION, "data"),
        State(IDS.ATTENTION_SHOWN, "data"),
    )
    def _attention(
        _trigger, layer, head, rtg_b, all_heads, rtg, model_value, tab, session_id, shown
    ):
        _only_when(tab, IDS.TAB_ATTENTION)
        out = render_attention(
            state, session_id, rtg, model_value, layer, head, rtg_b, bool(all_heads), shown
        )
        return (*out.figures, layout.message(out.message, out.kind), out.shown)

    @app.callback(
        Output(IDS.LENS, "figure"),
        Output(IDS.DLA, "figure"),
        Output(IDS.LENS_MESSAGE, "children"),
        Input(IDS.TAB_TRIGGERS[IDS.TAB_LENS], "data"),
        Input(IDS.LENS_A, "value"),
        Input(IDS.LENS_B, "value"),
        *_TAB_STATES,
        State(IDS.SESSION, "data"),
    )
    def _lens(_trigger, action_a, action_b, rtg, model_value, tab, session_id):
        _only_when(tab, IDS.TAB_LENS)
        out = render_lens(state, session_id, rtg, model_value, action_a, action_b)
        return (*out.figures, layout.message(out.message, out.kind))

    @app.callback(
        Output(IDS.PATCH_POS, "figure"),
        Output(IDS.PATCH_HEAD, "figure"),
        Output(IDS.PATCH_MESSAGE, "children"),
        Output(IDS.PATCH_SHOWN, "data"),
        Input(IDS.TAB_TRIGGERS[IDS.TAB_PATCHING], "data"),
        Input(IDS.EDIT, "value"),
        Input(IDS.EDIT_RTG, "value"),
        Input(IDS.PATCH_A, "value"),
        Input(IDS.PATCH_B, "value"),
        Input(IDS.PATCH_MODE, "value"),
        *_TAB_STATES,
        State(IDS.SESSION, "data"),
        State(IDS.PATCH_SHOWN, "data"),
    )
    def _patching(
        _trigger, edit, edit_rtg, action_a, action_b, mode, rtg, model_value, tab, session_id,
        shown,
    ):  # fmt: skip
        _only_when(tab, IDS.TAB_PATCHING)
        out = render_patching(
            state, session_id, rtg, model_value, edit, edit_rtg, action_a, action_b, shown,
            mode or "exact",
        )  # fmt: skip
        return (*out.figures, layout.message(out.message, out.kind), out.shown)

    @app.callback(
        Output(IDS.GIF_DOWNLOAD, "data"),
        Output(IDS.GIF_MESSAGE, "children"),
        Input(IDS.GIF_BUTTON, "n_clicks"),
        State(IDS.INSTRUCTION, "value"),
        State(IDS.TOP, "value"),
        State(IDS.RTG, "value"),
        State(IDS.MODEL, "value"),
        prevent_initial_call=True,
    )
    def _gif(_clicks, instruction, top, rtg, model_value):
        out = gif_download(state, model_value, instruction, top, rtg)
        if out.content is None:
            return no_update, layout.message(out.message)
        return dcc.send_bytes(out.content, out.filename), None


#: what an analysis tab's callback reads besides its trigger and its own controls
_TAB_STATES = (State(IDS.RTG, "value"), State(IDS.MODEL, "value"), State(IDS.TABS, "value"))

#: the page-side gate of one analysis tab (``TAB`` = its value): on a key press, RTG,
#: model or tab change it sets the tab's trigger store only while the tab is visible, so
#: hidden tabs send no request; opening a tab sets it, and the tab catches up.
_TAB_GATE = """
function(episode, rtg, model, tab) {
    if (tab !== "TAB") {
        return window.dash_clientside.no_update;
    }
    return Date.now() + Math.random();
}
"""


def _page_has_frames(episode: Any, session_id: str) -> bool:
    """Whether the page already shows this session's grids (its episode store is set
    by the same response that sends them), so new pixels are enough."""
    return isinstance(episode, dict) and episode.get("session") == session_id


def _index_choice(n: int, value: int | None) -> tuple[Any, Any]:
    """Dropdown options ``0..n-1`` and the value to show: kept if valid, else 0."""
    if n == 0:  # no model: leave the dropdown as it is
        return no_update, no_update
    options = [{"label": str(i), "value": i} for i in range(n)]
    return options, value if isinstance(value, int) and 0 <= value < n else 0


def _only_when(tab: str, wanted: str) -> None:
    """Skip a hidden tab's callback (it runs when the tab is opened)."""
    if tab != wanted:
        raise PreventUpdate
