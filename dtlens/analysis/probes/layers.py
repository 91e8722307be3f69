"""Probes at every layer, with the two baselines: a random model and shuffled labels.

Background:
    :func:`linear_probes` reads one token of every window of a :class:`ProbeData`
    (``token="S"``: the last state token, where the model predicts the action; at the
    decision square, *the decision token*) at each hook, and fits one probe per hook
    for one fact (:func:`~dtlens.analysis.probes.fit.fit_probe`: the same seeded split
    everywhere). Every result carries two baselines:

    - the same probe on a **randomly initialised model of the same architecture**
      (:func:`random_model`: ``HookedDecisionTransformer(replace(model.cfg, seed=...))``),
      fed the same windows: what the architecture alone makes linearly readable
      (attention that mixes the context carries facts of earlier observations even
      untrained);
    - the same probe on **shuffled labels** (the trained model's activations): chance.

    A fact is represented by the trained model at a layer when its accuracy there is
    above both, beyond their confidence intervals.

Example:
    >>> data = memory_windows(model, n_routes=400, rtg=0.9)  # doctest: +SKIP
    >>> result = linear_probes(model, data, "instruction")  # doctest: +SKIP
    >>> result.accuracy_by_layer["blocks.1.hook_resid_post"]  # doctest: +SKIP
    1.0
    >>> result.plot().show()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from dtlens.analysis.probes.data import ProbeData
from dtlens.analysis.probes.fit import ProbeFit, fit_probe
from dtlens.errors import ConfigError

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = [
    "ProbeResult",
    "Token",
    "linear_probes",
    "probe_activations",
    "random_model",
    "residual_hooks",
    "token_position",
]

#: ``"S"`` (the last state token), ``"R"`` (the last RTG token), ``"A"`` (the last
#: action token: the action before the last state) or a token position (negative
#: counts from the end).
Token = str | int
#: default seed offset of the random model (any fixed number: a different init).
RANDOM_SEED = 1000


def residual_hooks(model: HookedDecisionTransformer) -> list[str]:
    """The residual stream at every depth: ``resid_pre`` and ``resid_mid`` of each layer,
    then the last layer's ``resid_post``.

    Example:
        >>> residual_hooks(model)  # doctest: +SKIP
        ['blocks.0.hook_resid_pre', 'blocks.0.hook_resid_mid', 'blocks.1.hook_resid_pre',
         'blocks.1.hook_resid_mid', 'blocks.1.hook_resid_post']
    """
    n = model.cfg.n_layers
    names = [f"blocks.{i}.hook_resid_{kind}" for i in range(n) for kind in ("pre", "mid")]
    return [*names, f"blocks.{n - 1}.hook_resid_post"]


def token_position(model: HookedDecisionTransformer, n_tokens: int, token: Token) -> int:
    """The position of ``token`` in a window of ``n_tokens`` tokens (one ending at a state).

    Raises:
        ConfigError: an unknown token kind, ``"R"`` for a model without RTG tokens, or
            a position outside the window.

    Example:
        >>> token_position(model, 26, "S"), token_position(model, 26, "R")  # doctest: +SKIP
        (25, 24)
    """
    kinds = model.token_kinds
    if isinstance(token, str):
        if token not in kinds:
            raise ConfigError(f"token={token!r} must be one of {list(kinds)} or a position.")
        back = {"S": 1, "R": 2, "A": 3} if len(kinds) == 3 else {"S": 1, "A": 2}
        position = n_tokens - back[token]
    elif isinstance(token, int) and not isinstance(token, bool):
        position = token + n_tokens if token < 0 else token
    else:
        raise ConfigError(f"token={token!r} must be 'S', 'R', 'A' or an int position.")
    if not 0 <= position < n_tokens:
        raise ConfigError(f"token {token!r} is outside a window of {n_tokens} tokens.")
    return position


@torch.no_grad()
def probe_activations(
    model: HookedDecisionTransformer,
    data: ProbeData,
    hooks: Sequence[str] | None = None,
    token: Token = "S",
    max_batch: int = 1024,
) -> dict[str, Tensor]:
    """``{hook: [N, ...]}`` the activations at ``token`` of every window, on the CPU.

    Example:
        >>> acts = probe_activations(model, data, ["blocks.0.hook_resid_post"])  # doctest: +SKIP
        >>> acts["blocks.0.hook_resid_post"].shape  # doctest: +SKIP
        torch.Size([400, 128])
    """
    names = list(residual_hooks(model) if hooks is None else hooks)
    model.check_hook_names(names)
    wanted = set(names)
    position = token_position(model, data.batch.n_tokens(model.cfg.tokens_per_step), token)
    parts: dict[str, list[Tensor]] = {name: [] for name in names}
    for lo in range(0, len(data), max_batch):
        batch = data.batch[lo : lo + max_batch].to(model.device)
        _, cache = model.run_with_cache(batch, names_filter=lambda n: n in wanted)
        for name in names:
            parts[name].append(cache[name][:, position].float().cpu())
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def random_model(model: HookedDecisionTransformer, seed: int = RANDOM_SEED):
    """A freshly initialised model of ``model``'s architecture (config with ``seed``),
    in eval mode on ``model``'s device, padding convention copied.

    Example:
        >>> baseline = random_model(model, seed=1000)  # doctest: +SKIP
    """
    cls = type(model)
    fresh = cls(dataclasses.replace(model.cfg, seed=seed))
    fresh.metadata = {k: v for k, v in model.metadata.items() if k == "context_padding"}
    return fresh.to(model.device).eval()


@dataclass(frozen=True)
class ProbeResult:
    """Probes for one fact at several hooks, and both baselines.

    Attributes:
        fact: the fact probed (a key of ``ProbeData.labels``).
        token: the token read (see :data:`Token`).
        hooks: the hooks, in depth order.
        trained: one :class:`ProbeFit` per hook on the model.
        random_model: one per hook on a randomly initialised model.
        shuffled: one per hook on the model with shuffled labels.
        n_windows: windows probed.
        random_seed: the random model's init seed.
    """

    fact: str
    token: Token
    hooks: tuple[str, ...]
    trained: tuple[ProbeFit, ...]
    random_model: tuple[ProbeFit, ...]
    shuffled: tuple[ProbeFit, ...]
    n_windows: int
    random_seed: int = RANDOM_SEED

    @property
    def accuracy_by_layer(self) -> dict[str, float]:
        """``{hook: held-out accuracy}`` of the trained model's probes."""
        return {h: f.accuracy for h, f in zip(self.hooks, self.trained, strict=True)}

    @property
    def ci_by_layer(self) -> dict[str, tuple[float, float]]:
        """``{hook: 95 % Wilson interval}`` of the trained model's probes."""
        return {h: f.ci for h, f in zip(self.hooks, self.trained, strict=True)}

    @property
    def random_model_accuracy_by_layer(self) -> dict[str, float]:
        """``{hook: accuracy}`` of the same probes on the random model."""
        return {h: f.accuracy for h, f in zip(self.hooks, self.random_model, strict=True)}

    @property
    def shuffled_accuracy_by_layer(self) -> dict[str, float]:
        """``{hook: accuracy}`` of the same probes on shuffled labels."""
        return {h: f.accuracy for h, f in zip(self.hooks, self.shuffled, strict=True)}

    @property
    def chance(self) -> float:
        """The majority label's share of the held-out rows."""
        return self.trained[0].chance

    def best_hook(self) -> str:
        """The first hook where the trained model's accuracy is highest."""
        accuracy = self.accuracy_by_layer
        return max(self.hooks, key=lambda h: (accuracy[h], -self.hooks.index(h)))

    def to_dict(self) -> dict[str, Any]:
        """The numbers, JSON-ready (accuracies rounded to 4 decimals)."""

        def table(fits: tuple[ProbeFit, ...], what: str) -> dict[str, Any]:
            return {h: getattr(f, what) for h, f in zip(self.hooks, fits, strict=True)}

        def rounded(value: Any) -> Any:
            if isinstance(value, tuple):
                return [round(v, 4) for v in value]
            return round(value, 4)

        return {
            "fact": self.fact,
            "token": self.token,
            "n_windows": self.n_windows,
            "n_test": self.trained[0].n_test,
            "chance": round(self.chance, 4),
            "accuracy_by_layer": {
                h: rounded(v) for h, v in table(self.trained, "accuracy").items()
            },
            "ci_by_layer": {h: rounded(v) for h, v in table(self.trained, "ci").items()},
            "random_model_accuracy_by_layer": {
                h: rounded(v) for h, v in table(self.random_model, "accuracy").items()
            },
            "random_model_ci_by_layer": {
                h: rounded(v) for h, v in table(self.random_model, "ci").items()
            },
            "shuffled_accuracy_by_layer": {
                h: rounded(v) for h, v in table(self.shuffled, "accuracy").items()
            },
            "shuffled_ci_by_layer": {h: rounded(v) for h, v in table(self.shuffled, "ci").items()},
        }

    def plot(self, title: str | None = None) -> go.Figure:
        """Accuracy per hook with its interval, beside both baselines
        (:func:`dtlens.plotting.probes.plot_probe_accuracy`)."""
        from dtlens.plotting.probes import plot_probe_accuracy

        return plot_probe_accuracy(self, title=title)


def linear_probes(
    model: HookedDecisionTransformer,
    data: ProbeData,
    fact: str,
    hooks: Sequence[str] | None = None,
    token: Token = "S",
    seed: int = 0,
    test_fraction: float = 0.3,
    baseline: HookedDecisionTransformer | None = None,
    random_seed: int = RANDOM_SEED,
) -> ProbeResult:
    """Probe ``fact`` at each hook of ``model``, of a random model and on shuffled labels.

    Args:
        model: the trained model.
        data: windows and labels (:func:`memory_windows`, :func:`rollout_windows`).
        fact: a key of ``data.labels`` (``"instruction"``, ``"target_side"``,
            ``"rtg_bucket"``, ``"steps_to_decision"``).
        hooks: hook names (default :func:`residual_hooks`).
        token: the token read in every window (default the last state: the token
            whose logits give the action).
        seed: seeds every split (the same rows are held out at every hook and for
            every baseline) and the label permutation.
        test_fraction: the held-out share.
        baseline: the random model (default :func:`random_model` ``(model, random_seed)``).
        random_seed: the random model's init seed.

    Raises:
        ConfigError: an unknown fact, or labels a probe cannot be fitted on.
        HookNameError: an unknown hook.

    Example:
        >>> result = linear_probes(model, data, "target_side", token="S")  # doctest: +SKIP
        >>> result.shuffled_accuracy_by_layer  # doctest: +SKIP
    """
    if fact not in data.labels:
        raise ConfigError(f"fact={fact!r} is not labelled; the facts are {sorted(data.labels)}.")
    names = list(residual_hooks(model) if hooks is None else hooks)
    labels = data.labels[fact]
    other = random_model(model, random_seed) if baseline is None else baseline
    trained_acts = probe_activations(model, data, names, token)
    random_acts = probe_activations(other, data, names, token)

    def fits(acts: dict[str, Tensor], shuffle: bool) -> tuple[ProbeFit, ...]:
        return tuple(
            fit_probe(acts[n], labels, seed, test_fraction, shuffle_labels=shuffle) for n in names
        )

    return ProbeResult(
        fact=fact,
        token=token,
        hooks=tuple(names),
        trained=fits(trained_acts, False),
        random_model=fits(random_acts, False),
        shuffled=fits(trained_acts, True),
        n_windows=len(data),
        random_seed=random_seed,
    )
