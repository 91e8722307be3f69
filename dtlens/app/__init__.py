"""The dtlens live app: play the Memory task by keyboard and watch the model's preferences.

``dtlens app`` serves it (see ``docs/app.md``). The page has an environment panel (the
grid, the agent's view, a scenario picker; arrow keys and letters step the env), a model
panel (the model's action probabilities for the next step, an RTG slider that sets every
RTG token, "follow the model", the context window) and analysis tabs (attention,
logit lens and DLA, activation patching of an edit of the current trajectory).

Modules: :mod:`~dtlens.app.server` (``create_app``, ``run``), :mod:`~dtlens.app.layout`
(components), :mod:`~dtlens.app.callbacks` (thin callbacks) and :mod:`~dtlens.app.wiring`
(their Dash bindings), :mod:`~dtlens.app.session`
(server-side episode state and caches), :mod:`~dtlens.app.views` and
:mod:`~dtlens.app.tabs` (pure functions: state -> figures), :mod:`~dtlens.app.models`
(model picker), :mod:`~dtlens.app.validation` (HTTP 400 for malformed requests). Needs
``dash`` and ``waitress`` (``pip install dtlens[app]``).

The server answers requests in parallel threads; every forward the app runs holds its
model's :func:`dtlens.model.hooks_lock`, as a model running hooks is not thread-safe.

Example:
    >>> from dtlens.app import create_app, run
    >>> run(create_app(model="memorydt"))  # doctest: +SKIP
"""

from dtlens.app.server import create_app, make_server, run

__all__ = ["create_app", "make_server", "run"]
