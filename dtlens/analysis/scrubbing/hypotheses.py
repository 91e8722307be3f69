"""Ready-made hypotheses about the Memory task's decision.

:func:`through_heads` states "feature ``carried`` reaches the output only through these
heads": the claim a circuit makes about how the instruction reaches the decision.

Examples:
    >>> from tests.conftest import build_model
    >>> from dtlens.analysis.circuits import DTGraph
    >>> h = through_heads(DTGraph(build_model()), ["L0H1"])
    >>> h.name, [c.name for c in h.claims]
    ('instruction via L0H1', ['heads', 'embeddings', 'rest'])
"""

from __future__ import annotations

from collections.abc import Sequence

from dtlens.analysis.circuits.graph import DTGraph
from dtlens.analysis.circuits.nodes import Embed, Head, parse_sender
from dtlens.analysis.scrubbing.hypothesis import IDENTITY, Claim, Feature, Hypothesis
from dtlens.errors import ConfigError, HypothesisError

__all__ = ["through_heads"]


def through_heads(
    graph: DTGraph,
    heads: Sequence[Head | str],
    carried: Feature = "instruction",
    rest: Feature = ("top", "rtg"),
    name: str | None = None,
) -> Hypothesis:
    """``carried`` reaches the output only through ``heads``; all else needs only ``rest``.

    Three claims about the forward pass on the reference input x:

    - ``heads``: every edge out of the heads carries their values on an input x1
      equivalent to x under ``carried`` (the heads computed whole on x1);
    - ``embeddings``: every embedding, as every other node reads it, carries its value on
      one input x2 equivalent to x under ``rest``;
    - ``rest``: every other head and MLP is computed in this pass (``"identity"``) from
      those.

    So the output sees ``carried`` only through the heads, and the rest of the input
    only as far as ``rest`` pins it down. With ``rest="identity"`` it says only that the
    heads' outputs depend on nothing but ``carried``.

    Args:
        graph: the model's graph.
        heads: the heads (``"L0H1"`` or :class:`~dtlens.analysis.circuits.Head`).
        carried: the feature the heads carry.
        rest: the feature everything else may depend on.
        name: a label (default ``"instruction via L0H1"``).

    Raises:
        HypothesisError: no heads, or a head the graph lacks.

    Examples:
        >>> from tests.conftest import build_model
        >>> graph = DTGraph(build_model())
        >>> through_heads(graph, ["L0H1"], rest="identity").claims[1].feature
        'identity'
    """
    try:
        chosen = [parse_sender(h) for h in heads]
    except ConfigError as err:
        raise HypothesisError(f"through_heads: {err}") from None
    if not chosen or not all(isinstance(h, Head) and h in graph.senders for h in chosen):
        raise HypothesisError(
            f"through_heads needs one or more heads of the graph, e.g. ['L0H1']; got "
            f"{[str(h) for h in chosen] or heads!r}."
        )
    embeds = [s for s in graph.senders if isinstance(s, Embed)]
    others = [s for s in graph.senders if not isinstance(s, Embed) and s not in chosen]
    claims = [
        Claim(chosen, carried, name="heads"),
        Claim(embeds, rest, name="embeddings"),
    ]
    if others:
        claims.append(Claim(others, IDENTITY, children=(), name="rest"))
    label = carried if isinstance(carried, str) else "+".join(carried)
    default = f"{label} via {', '.join(str(h) for h in chosen)}"
    return Hypothesis(claims, name=default if name is None else name)
