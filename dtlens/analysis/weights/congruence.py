"""Congruence: how strongly a weight vector writes (or reads) each action, neuron or input.

Background:
    Miller & Neo ("We found an neuron in GPT-2", 2023) call the product of an MLP
    neuron's output weights and the unembedding its *congruence* with each output
    token. The MemoryDT post plots it for every neuron-action pair (``W_out[l] @ W_U``)
    and finds that congruence with left / right / forward grows with depth. This
    module computes that table, the same product for the DT's embeddings
    (embedding -> action, embedding -> neuron) and for each head's OV circuit
    composed with an embedding (``E W_V W_O W_U``), as labelled tables that flatten
    to one record per entry for strip plots.

LayerNorm:
    ``fold_ln=True`` (default) reads every residual vector through the centring and
    weight of the LayerNorm that reads it (``ln_final`` before ``W_U``, ``ln2`` of layer
    l before ``W_in[l]``, ``ln1`` before ``W_V``), i.e. ``W_U`` is replaced by
    :func:`dtlens.analysis.weights.embeddings.effective_unembed`; the data-dependent ``1/σ``
    scale and all biases are ignored. ``fold_ln=False`` is the seed's raw
    ``W_out @ W_U``. The same convention holds in :mod:`dtlens.analysis.weights.qk_ov`.

Examples:
    >>> from tests.conftest import build_model
    >>> model = build_model()
    >>> table = congruence(model)
    >>> table.axes, tuple(table.values.shape)
    (('layer', 'neuron', 'action'), (2, 64, 7))
    >>> table.to_long_records()[0]["action"]
    'left'
    >>> growth = per_layer_growth(table)
    >>> growth.axes, tuple(growth.values.shape)
    (('layer', 'action'), (2, 3))

References:
    Miller & Neo, "We Found An Neuron in GPT-2" (2023); Bloom & Colognese,
    "Decision Transformer Interpretability" (2023).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from dtlens.analysis.weights.embeddings import (
    Source,
    action_index,
    action_labels,
    effective_unembed,
    embedding_matrix,
    fold_layer_norm,
)
from dtlens.analysis.weights.qk_ov import ov_circuit
from dtlens.errors import ConfigError

if TYPE_CHECKING:
    from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = [
    "CongruenceTable",
    "congruence",
    "embedding_congruence",
    "embedding_neuron_congruence",
    "head_congruence",
    "per_layer_growth",
]


@dataclass(frozen=True)
class CongruenceTable:
    """A tensor of congruences with named axes and one label per index.

    Args:
        values: the table, one axis per name in ``axes``.
        axes: axis names, e.g. ``("layer", "neuron", "action")``.
        labels: per axis, one label per index (ints for layers/neurons/heads,
            strings for actions and inputs).
        name: what the table measures (for plot titles).
        fold_ln: whether LayerNorm weights were folded in (module docstring).
        fixed: coordinates shared by every entry (e.g. ``{"layer": 1}`` for one
            layer's table); they appear in every long record.
    """

    values: Float[Tensor, "..."]
    axes: tuple[str, ...]
    labels: dict[str, tuple[Any, ...]]
    name: str
    fold_ln: bool = True
    fixed: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.axes) != self.values.ndim:
            raise ConfigError(
                f"{len(self.axes)} axes {self.axes} for values of shape {list(self.values.shape)}."
            )
        for axis, size in zip(self.axes, self.values.shape, strict=True):
            if len(self.labels.get(axis, ())) != size:
                raise ConfigError(
                    f"axis {axis!r} has {size} entries but {len(self.labels.get(axis, ()))} labels."
                )

    def to_long_records(self) -> list[dict[str, Any]]:
        """One dict per entry: the fixed coordinates, one label per axis, and ``value``.

        The rows come in the table's (row-major) order, e.g. layer, then neuron, then
        action, which is the left-to-right order of the seed's strip plot.

        Examples:
            >>> rec = congruence(model).to_long_records()
            >>> sorted(rec[0]), len(rec)
            (['action', 'layer', 'neuron', 'value'], 896)
        """
        flat = self.values.detach().reshape(-1).tolist()
        label_lists = [self.labels[axis] for axis in self.axes]
        return [
            {**self.fixed, **dict(zip(self.axes, combo, strict=True)), "value": value}
            for combo, value in zip(itertools.product(*label_lists), flat, strict=True)
        ]

    def value(self, **where: Any) -> float:
        """The entry at one label per axis, e.g. ``value(layer=1, neuron=3, action="left")``.

        Raises:
            ConfigError: if an axis is missing or a label is not on its axis.

        Examples:
            >>> t = congruence(model)
            >>> t.value(layer=1, neuron=3, action="left") == float(t.values[1, 3, 0])
            True
        """
        if set(where) != set(self.axes):
            raise ConfigError(f"give one label per axis {self.axes}, got {sorted(where)}.")
        index = []
        for axis in self.axes:
            if where[axis] not in self.labels[axis]:
                raise ConfigError(
                    f"{where[axis]!r} is not a label of axis {axis!r}; labels: "
                    f"{list(self.labels[axis])[:10]}..."
                )
            index.append(self.labels[axis].index(where[axis]))
        return float(self.values[tuple(index)])


def congruence(
    model: HookedDecisionTransformer, layer: int | None = None, fold_ln: bool = True
) -> CongruenceTable:
    """Neuron -> action congruence ``W_out[l] @ W_U`` of every MLP neuron.

    Args:
        model: the decision transformer.
        layer: one layer (values ``[d_mlp, n_actions]``, ``fixed={"layer": layer}``), or
            None for all (values ``[n_layers, d_mlp, n_actions]``).
        fold_ln: use ``ln_final``'s centring and weight (module docstring).

    Raises:
        ConfigError: for a layer outside ``0..n_layers-1``.

    Examples:
        >>> one = congruence(model, layer=1)
        >>> one.axes, one.fixed, bool(torch.equal(one.values, congruence(model).values[1]))
        (('neuron', 'action'), {'layer': 1}, True)
    """
    _check_layer(model, layer)
    with torch.no_grad():
        values = model.core.W_out.detach() @ effective_unembed(model, fold_ln)
    labels = {
        "layer": tuple(range(model.cfg.n_layers)),
        "neuron": tuple(range(model.cfg.d_mlp)),
        "action": action_labels(model.cfg.n_actions),
    }
    table = CongruenceTable(values, ("layer", "neuron", "action"), labels, "W_out @ W_U", fold_ln)
    return table if layer is None else _select_layer(table, layer)


def embedding_congruence(
    model: HookedDecisionTransformer,
    sources: Sequence[Source] = ("state", "rtg", "action", "time"),
    fold_ln: bool = True,
) -> dict[str, CongruenceTable]:
    """Embedding -> action congruence ``E @ W_U`` for each DT embedding (direct path).

    Each table has axes ``("input", "action")``: one row per embedding input
    (state features in ``(c x y)`` order labelled ``"object:key@(3,6)"``, the RTG
    weight, action rows, time rows, ...; see
    :func:`dtlens.analysis.weights.embeddings.embedding_matrix`) and ``fixed={"source": ...}``.
    A behavioural clone has no ``"rtg"``; it is skipped when left in the default.

    Raises:
        ConfigError: for an unknown source (or ``"rtg"`` asked of a clone explicitly).

    Examples:
        >>> tables = embedding_congruence(model)
        >>> sorted(tables), tuple(tables["state"].values.shape)
        (['action', 'rtg', 'state', 'time'], (980, 7))
    """
    default = sources == ("state", "rtg", "action", "time")
    out = {}
    for source in sources:
        if default and source == "rtg" and model.cfg.model_type != "decision_transformer":
            continue
        rows = embedding_matrix(model, source)
        with torch.no_grad():
            values = rows.weight @ effective_unembed(model, fold_ln)
        labels = {"input": rows.labels, "action": action_labels(model.cfg.n_actions)}
        out[source] = CongruenceTable(
            values,
            ("input", "action"),
            labels,
            f"{source} embedding @ W_U",
            fold_ln,
            {"source": source},
        )
    return out


def embedding_neuron_congruence(
    model: HookedDecisionTransformer,
    source: Source = "state",
    layer: int | None = None,
    weight: Literal["in", "gate"] = "in",
    fold_ln: bool = True,
) -> CongruenceTable:
    """Embedding -> neuron congruence ``E @ W_in[l]``: how much each input drives each neuron.

    Args:
        model: the decision transformer.
        source: which embedding (:data:`dtlens.analysis.weights.embeddings.SOURCES`).
        layer: one layer (axes ``("input", "neuron")``) or all
            (``("layer", "input", "neuron")``).
        weight: ``"in"`` (``W_in``, the linear branch) or, for gated MLPs
            (``post = act(x W_gate) * (x W_in)``), ``"gate"`` (``W_gate``).
        fold_ln: read the embedding through ``ln2`` of each layer (module docstring).

    Raises:
        ConfigError: for a bad source or layer, or ``weight="gate"`` on an ungated MLP.

    Examples:
        >>> t = embedding_neuron_congruence(model, "action", layer=0)
        >>> t.axes, tuple(t.values.shape)
        (('input', 'neuron'), (8, 64))
    """
    _check_layer(model, layer)
    if weight not in ("in", "gate"):
        raise ConfigError(f"weight={weight!r} must be 'in' or 'gate'.")
    if weight == "gate" and not model.cfg.gated_mlp:
        raise ConfigError("weight='gate' needs a gated MLP; this model has gated_mlp=False.")
    rows = embedding_matrix(model, source)
    w_all = model.core.W_gate if weight == "gate" else model.core.W_in
    with torch.no_grad():
        per_layer = [
            (fold_layer_norm(rows.weight, model, "ln2", i) if fold_ln else rows.weight)
            @ w_all[i].detach()
            for i in range(model.cfg.n_layers)
        ]
    labels = {
        "layer": tuple(range(model.cfg.n_layers)),
        "input": rows.labels,
        "neuron": tuple(range(model.cfg.d_mlp)),
    }
    table = CongruenceTable(
        torch.stack(per_layer),
        ("layer", "input", "neuron"),
        labels,
        f"{source} embedding @ W_{weight}",
        fold_ln,
        {"source": source},
    )
    return table if layer is None else _select_layer(table, layer)


def head_congruence(
    model: HookedDecisionTransformer,
    source: Source = "state",
    layer: int | None = None,
    fold_ln: bool = True,
) -> CongruenceTable:
    """Head OV -> action congruence ``E W_V[l,h] W_O[l,h] W_U`` for every head.

    Computed per head with :func:`dtlens.analysis.weights.qk_ov.ov_circuit` (a
    ``FactoredMatrix``); axes ``("layer", "head", "input", "action")``, or
    ``("head", "input", "action")`` for one layer.

    Raises:
        ConfigError: for a bad source or layer.

    Examples:
        >>> t = head_congruence(model, "rtg")
        >>> t.axes, tuple(t.values.shape)
        (('layer', 'head', 'input', 'action'), (2, 4, 1, 7))
    """
    _check_layer(model, layer)
    layers = range(model.cfg.n_layers) if layer is None else [layer]
    circuits = [
        [ov_circuit(model, i, h, source, fold_ln=fold_ln) for h in range(model.cfg.n_heads)]
        for i in layers
    ]
    values = torch.stack([torch.stack([c.dense() for c in row]) for row in circuits])
    labels = {
        "layer": tuple(layers),
        "head": tuple(range(model.cfg.n_heads)),
        "input": circuits[0][0].rows,
        "action": circuits[0][0].cols,
    }
    table = CongruenceTable(
        values,
        ("layer", "head", "input", "action"),
        labels,
        f"{source} embedding @ W_OV @ W_U",
        fold_ln,
        {"source": source},
    )
    return table if layer is None else _select_layer(table, layer)


def per_layer_growth(
    table: CongruenceTable,
    actions: Sequence[int | str] = ("left", "right", "forward"),
    stat: Literal["max_abs", "norm", "mean_abs"] = "max_abs",
) -> CongruenceTable:
    """Per-layer size of the neuron-action congruence for some actions (the seed's growth).

    Args:
        table: a full :func:`congruence` table (axes ``("layer", "neuron", "action")``).
        actions: the actions to summarise (names or indices).
        stat: over the neurons of a layer, ``"max_abs"`` (largest ``|congruence|``),
            ``"norm"`` (L2 norm) or ``"mean_abs"`` (mean ``|congruence|``).

    Returns:
        A table with axes ``("layer", "action")``.

    Raises:
        ConfigError: for a table of another shape, an unknown action or stat.

    Examples:
        >>> g = per_layer_growth(congruence(model), actions=("left",), stat="norm")
        >>> tuple(g.values.shape), g.labels["action"]
        ((2, 1), ('left',))
    """
    if table.axes != ("layer", "neuron", "action"):
        raise ConfigError(
            f"per_layer_growth needs a table with axes ('layer', 'neuron', 'action') from "
            f"congruence(model) (no layer=), got axes {table.axes}."
        )
    names = table.labels["action"]
    index = [action_index(a, len(names)) for a in actions]
    chosen = table.values[:, :, index]
    if stat == "max_abs":
        values = chosen.abs().amax(dim=1)
    elif stat == "norm":
        values = chosen.norm(dim=1)
    elif stat == "mean_abs":
        values = chosen.abs().mean(dim=1)
    else:
        raise ConfigError(f"stat={stat!r} must be 'max_abs', 'norm' or 'mean_abs'.")
    labels = {"layer": table.labels["layer"], "action": tuple(names[i] for i in index)}
    return CongruenceTable(
        values, ("layer", "action"), labels, f"{stat} of {table.name} per layer", table.fold_ln
    )


def _select_layer(table: CongruenceTable, layer: int) -> CongruenceTable:
    position = table.labels["layer"].index(layer)
    axes = tuple(a for a in table.axes if a != "layer")
    labels = {a: table.labels[a] for a in axes}
    return CongruenceTable(
        table.values[position],
        axes,
        labels,
        table.name,
        table.fold_ln,
        {**table.fixed, "layer": layer},
    )


def _check_layer(model: HookedDecisionTransformer, layer: int | None) -> None:
    n = model.cfg.n_layers
    if layer is not None and (
        isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n
    ):
        raise ConfigError(f"layer={layer!r} must be None or an int in 0..{n - 1} (n_layers={n}).")
