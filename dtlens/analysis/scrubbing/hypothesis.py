"""Causal-scrubbing hypotheses: a tree of claims about which edges carry which feature.

A hypothesis says, for some edges of the model's graph
(:class:`~dtlens.analysis.circuits.DTGraph`: embeddings, heads and MLPs as senders;
heads' q/k/v, MLP inputs and the logits as receivers), *what those edges carry*: a
:class:`Claim` names edges and a *feature* of the input (an equivalence relation on
inputs: two inputs are equivalent when the feature agrees), and claims that the
values on those edges depend on the input only through that feature. Every edge no
claim names is claimed to matter not at all. :func:`~dtlens.analysis.scrubbing.causal_scrubbing`
tests the claims by resampling: an edge a claim names carries its sender's value on an
input *equivalent* to the current one, every other edge its value on a *random* input.

A claim's ``edges``:

- an edge, ``"L0H1->MLP1.in"`` or :class:`~dtlens.analysis.circuits.Edge`;
- a node (a sender), ``"L0H1"``, ``"MLP0"``, ``"state_embed"`` (with a per-token graph
  also ``"state_embed@S5"``): every edge out of it (in a child claim, every edge out of
  it *into its parent's senders*);
- ``"all"``: every edge (in a child claim, every edge into its parent's senders);
- or a list of these.

A claim's ``feature``: ``"identity"`` (the input itself), ``"any"`` (every input is
equivalent: an independent random input), the name of a feature of the dataset
(``"instruction"``) or a tuple of names (equivalent when all agree).

A claim's ``children`` say how its senders are computed, recursively (the paper's
tree of claims):

- ``None`` (default): no claim about the inside; the senders are computed on the
  claim's input, whole (everything upstream of them sees that input);
- a list of claims (possibly empty) about the senders' inputs: the senders are computed
  in a forward pass on the claim's input in which the children's edges carry what the
  children say and *every other edge into them* a random input's value.

A claim with feature ``"identity"`` and children keeps its senders in its parent's
forward pass (their children are claims of that pass too); with another feature it
starts a new forward pass on an equivalent input. A child claim's edges end at inputs of
senders its forward pass computes: its parent's, or those of identity claims with
children in the same pass.

:meth:`Hypothesis.from_edges` builds the tree from a labelled subgraph (edge ->
feature), the form of a circuit.

Examples:
    >>> h = Hypothesis([Claim("MLP1->logits", children=[
    ...     Claim("L0H1->MLP1.in", feature="instruction")])], name="L0H1 -> MLP1")
    >>> print(h)
    L0H1 -> MLP1: [MLP1->logits | identity: [L0H1->MLP1.in | instruction]]
    >>> print(Hypothesis.identity())
    identity: [all | identity]
    >>> print(Hypothesis.empty())
    empty: (no claims)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dtlens.analysis.circuits.graph import DTGraph, Edge, parse_edge
from dtlens.analysis.circuits.nodes import (
    MLP,
    Embed,
    Head,
    HeadInput,
    Logits,
    MLPInput,
    Receiver,
    Sender,
    parse_sender,
)
from dtlens.errors import ConfigError, HypothesisError

__all__ = [
    "ALL",
    "ANY",
    "IDENTITY",
    "Claim",
    "Feature",
    "Hypothesis",
    "inputs_of",
    "resolve_edges",
]

#: The feature under which an input is equivalent only to itself.
IDENTITY = "identity"
#: The feature under which every input is equivalent.
ANY = "any"
#: The edge spec naming every edge (in a child claim: every edge into its parent's senders).
ALL = "all"

#: A feature: ``"identity"``, ``"any"``, a dataset feature name, or a tuple of names.
Feature = str | tuple[str, ...]
EdgeLike = Edge | Sender | str


def _as_feature(feature: object) -> Feature:
    if isinstance(feature, str) and feature:
        return feature
    if isinstance(feature, Sequence) and feature and all(isinstance(f, str) for f in feature):
        return feature[0] if len(feature) == 1 else tuple(feature)
    raise HypothesisError(
        f"a claim's feature is 'identity', 'any', a dataset feature name such as "
        f"'instruction', or a tuple of names such as ('top', 'rtg'); got {feature!r}."
    )


def _as_edges(edges: object) -> tuple[EdgeLike, ...]:
    if isinstance(edges, str | Edge | Head | MLP | Embed):
        return (edges,)
    if isinstance(edges, Iterable):
        out = tuple(edges)
        if out and all(isinstance(e, str | Edge | Head | MLP | Embed) for e in out):
            return out
    raise HypothesisError(
        f"a claim's edges are an edge ('L0H1->MLP1.in' or an Edge), a node ('L0H1', "
        f"'state_embed', a Head/MLP/Embed), 'all', or a non-empty list of these; got {edges!r}."
    )


def _feature_text(feature: Feature) -> str:
    return feature if isinstance(feature, str) else "+".join(feature)


@dataclass(frozen=True)
class Claim:
    """Edges whose values depend on the input only through ``feature``.

    Args:
        edges: edges, nodes or ``"all"`` (see the module docstring).
        feature: ``"identity"`` (default), ``"any"``, a dataset feature or a tuple of them.
        children: None (the senders are computed whole on the claim's input) or claims
            about the senders' inputs (every input they do not name is resampled).
        name: an optional label (shown by ``str``).

    Raises:
        HypothesisError: malformed edges, feature or children.

    Examples:
        >>> c = Claim(["L0H1->MLP0.in", "L0H1->MLP1.in"], feature=("instruction",))
        >>> c.feature, str(c)
        ('instruction', '[L0H1->MLP0.in, L0H1->MLP1.in | instruction]')
    """

    edges: EdgeLike | Sequence[EdgeLike]
    feature: Feature = IDENTITY
    children: Sequence[Claim] | None = None
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "edges", _as_edges(self.edges))
        object.__setattr__(self, "feature", _as_feature(self.feature))
        if self.children is not None:
            children = (self.children,) if isinstance(self.children, Claim) else self.children
            if isinstance(children, Iterable):
                children = tuple(children)
            if not isinstance(children, tuple) or not all(isinstance(c, Claim) for c in children):
                raise HypothesisError(
                    f"a claim's children are None or a list of Claims; got {self.children!r}."
                )
            object.__setattr__(self, "children", children)

    def __str__(self) -> str:
        edges = ", ".join(str(e) for e in self.edges)
        head = f"{self.name}: " if self.name else ""
        inside = ""
        if self.children is not None:
            inside = ": " + (", ".join(map(str, self.children)) or "[]")
        return f"[{head}{edges} | {_feature_text(self.feature)}{inside}]"


@dataclass(frozen=True)
class Hypothesis:
    """A tree of :class:`Claim` s about the model's output (the root: the logits).

    Args:
        claims: the top-level claims (about edges read in the forward pass on the
            reference input itself).
        name: a label for results and plots.
        labels: the edge -> feature labels of :meth:`from_edges` (build those with it;
            the tree is then made for a graph by :meth:`tree`).

    Examples:
        >>> Hypothesis([Claim("L0H1", "instruction")], name="L0H1").claims[0].edges
        ('L0H1',)
    """

    claims: Sequence[Claim] = ()
    name: str = ""
    labels: tuple[tuple[EdgeLike, Feature], ...] | None = None

    def __post_init__(self) -> None:
        claims = (self.claims,) if isinstance(self.claims, Claim) else tuple(self.claims)
        if not all(isinstance(c, Claim) for c in claims):
            raise HypothesisError(f"a hypothesis holds Claims; got {self.claims!r}.")
        if claims and self.labels is not None:
            raise HypothesisError("a hypothesis has claims or edge labels, not both.")
        object.__setattr__(self, "claims", claims)

    @classmethod
    def identity(cls, name: str = "identity") -> Hypothesis:
        """Every edge carries its value on the input itself: recovers everything.

        Examples:
            >>> Hypothesis.identity().claims
            (Claim(edges=('all',), feature='identity', children=None, name=''),)
        """
        return cls([Claim(ALL, IDENTITY)], name=name)

    @classmethod
    def empty(cls, name: str = "empty") -> Hypothesis:
        """No claim: every edge carries a random input's value (full resampling).

        Examples:
            >>> Hypothesis.empty().claims
            ()
        """
        return cls((), name=name)

    @classmethod
    def from_edges(
        cls,
        edges: Mapping[EdgeLike, Feature] | Iterable[EdgeLike],
        feature: Feature = IDENTITY,
        name: str = "",
    ) -> Hypothesis:
        """The hypothesis of a labelled subgraph: each edge carries its feature, and
        the tree is built from the logits (:meth:`tree`).

        Args:
            edges: ``{edge: feature}``, or edges that all get ``feature``; nodes and
                ``"all"`` stand for their edges as in a top-level claim.
            feature: the feature of edges given without one.
            name: a label.

        In each forward pass, the edges into the receivers it needs are grouped by
        (sender, feature): an ``"identity"`` group keeps its sender in the pass (its
        inputs are then needed too); any other group reads its sender from one input
        equivalent under the feature, computed in a pass of its own (an embedding is
        read on that input directly). So ``from_edges(circuit)`` is a circuit whose
        edges keep the input and whose other edges are resampled, the "resample
        ablation" of ACDC.

        Examples:
            >>> h = Hypothesis.from_edges({"L0H1->MLP1.in": "instruction", "MLP1->logits":
            ...                            "identity"})
            >>> from tests.conftest import build_model
            >>> print(Hypothesis(h.tree(DTGraph(build_model()))))
            hypothesis: [L0H1->MLP1.in | instruction: []], [MLP1->logits | identity: []]
        """
        if isinstance(edges, Mapping):
            labels = tuple((e, _as_feature(f)) for e, f in edges.items())
        else:
            labels = tuple((e, _as_feature(feature)) for e in _as_edges(tuple(edges)))
        return cls((), name=name, labels=labels)

    def tree(self, graph: DTGraph) -> tuple[Claim, ...]:
        """The top-level claims (built from the labels for :meth:`from_edges`).

        Raises:
            HypothesisError: a label names an edge or node the graph lacks, or one edge
                gets two features.
        """
        if self.labels is None:
            return tuple(self.claims)
        labelled: dict[Edge, Feature] = {}
        for spec, feature in self.labels:
            for edge in resolve_edges(spec, graph):
                if labelled.setdefault(edge, feature) != feature:
                    raise HypothesisError(
                        f"edge {edge} is labelled both {labelled[edge]!r} and {feature!r}; "
                        "give each edge one feature."
                    )
        return tuple(_treeify(graph, labelled, {Logits()}))

    def __str__(self) -> str:
        if self.labels is not None:
            body = ", ".join(f"{e}: {_feature_text(f)}" for e, f in self.labels)
            return f"{self.name or 'hypothesis'}: {{{body}}}"
        claims = ", ".join(map(str, self.claims)) or "(no claims)"
        return f"{self.name or 'hypothesis'}: {claims}"


def inputs_of(sender: Sender, graph: DTGraph) -> tuple[Receiver, ...]:
    """The receivers through which ``sender`` reads the residual stream (none: embeddings).

    Examples:
        >>> from tests.conftest import build_model
        >>> graph = DTGraph(build_model())
        >>> [str(r) for r in inputs_of(Head(1, 0), graph)]
        ['L1H0.q', 'L1H0.k', 'L1H0.v']
    """
    if isinstance(sender, Head):
        wanted: tuple[Receiver, ...] = tuple(
            HeadInput(sender.layer, sender.head, k) for k in ("q", "k", "v")
        )
    elif isinstance(sender, MLP):
        wanted = (MLPInput(sender.layer),)
    else:
        return ()
    return tuple(r for r in wanted if r in graph.receivers)


def resolve_edges(
    spec: EdgeLike | Sequence[EdgeLike],
    graph: DTGraph,
    into: Iterable[Receiver] | None = None,
    check: bool = True,
) -> tuple[Edge, ...]:
    """The graph's edges a claim's ``edges`` stand for, in graph order.

    Args:
        spec: edges, nodes or ``"all"``.
        graph: the model's graph.
        into: receivers the edges must end at (a child claim: its parent's senders'
            inputs); nodes and ``"all"`` are restricted to them. None: any receiver.
        check: whether an explicit edge not into ``into`` raises (False: the caller
            checks it, as causal scrubbing does once a forward pass's senders are known).

    Raises:
        HypothesisError: an unknown edge or node, an edge not into ``into``, or a spec
            standing for no edge.

    Examples:
        >>> from tests.conftest import build_model
        >>> graph = DTGraph(build_model())
        >>> [str(e) for e in resolve_edges("L1H0", graph)]
        ['L1H0->MLP1.in', 'L1H0->logits']
    """
    allowed = None if into is None else set(into)
    chosen: set[Edge] = set()
    for item in _as_edges(spec):
        if isinstance(item, str) and item.strip().lower() == ALL:
            found = [e for e in graph.edges if allowed is None or e.receiver in allowed]
        elif isinstance(item, Edge) or (isinstance(item, str) and "->" in item):
            edge = _graph_edge(item, graph)
            if check and allowed is not None and edge.receiver not in allowed:
                inputs = ", ".join(map(str, into or ())) or "none: embeddings have no inputs"
                raise HypothesisError(
                    f"{edge}: a child claim's edges must end at an input of its parent's "
                    f"senders ({inputs}); move the claim to where its receiver is claimed."
                )
            found = [edge]
        else:
            senders = _senders(item, graph)
            found = [
                e
                for e in graph.edges
                if e.sender in senders and (allowed is None or e.receiver in allowed)
            ]
        if not found:
            raise HypothesisError(
                f"{item!r} stands for no edge here"
                + ("" if allowed is None else " (into its parent's senders)")
                + "; name an edge 'SENDER->RECEIVER' that exists."
            )
        chosen.update(found)
    return tuple(e for e in graph.edges if e in chosen)


def _graph_edge(item: Edge | str, graph: DTGraph) -> Edge:
    try:
        edge = parse_edge(item)
        graph.index(edge)
    except ConfigError as err:  # parse_edge and graph.index raise ConfigError, never the subclass
        raise HypothesisError(f"claim edge {item!s}: {err}") from None
    return edge


def _senders(item: Sender | str, graph: DTGraph) -> set[Sender]:
    try:
        sender = parse_sender(item)
    except ConfigError as err:
        raise HypothesisError(
            f"claim edge {item!r}: not an edge 'SENDER->RECEIVER', 'all' or a node ({err})"
        ) from None
    if sender in graph.senders:
        return {sender}
    if isinstance(sender, Embed) and sender.pos is None:  # a per-token graph: every token
        found = {s for s in graph.senders if isinstance(s, Embed) and s.kind == sender.kind}
        if found:
            return found
    raise HypothesisError(
        f"node {sender} is not a sender of this graph; its senders are "
        f"{', '.join(str(s) for s in graph.senders[:8])}, ... (per-token embeddings like "
        "'state_embed@S5' need DTGraph(model, token_embeddings=model.token_labels(batch)))."
    )


def _treeify(
    graph: DTGraph, labelled: Mapping[Edge, Feature], needed: set[Receiver]
) -> list[Claim]:
    """The claims of one forward pass that needs ``needed`` (see :meth:`Hypothesis.from_edges`)."""
    into: dict[Receiver, list[Edge]] = {}
    for edge in labelled:
        into.setdefault(edge.receiver, []).append(edge)
    needed, frontier = set(needed), list(needed)
    while frontier:  # identity edges keep their sender in this pass: its inputs are needed
        for edge in into.get(frontier.pop(), []):
            if labelled[edge] == IDENTITY:
                for r in inputs_of(edge.sender, graph):
                    if r not in needed:
                        needed.add(r)
                        frontier.append(r)
    groups: dict[tuple[Sender, Feature], list[Edge]] = {}
    for edge in graph.edges:
        if edge.receiver in needed and edge in labelled:
            groups.setdefault((edge.sender, labelled[edge]), []).append(edge)
    claims = []
    for (sender, feature), edges in groups.items():
        if isinstance(sender, Embed):
            children = None
        elif feature == IDENTITY:
            children = ()  # its inputs are claims of this same pass
        else:
            children = tuple(_treeify(graph, labelled, set(inputs_of(sender, graph))))
        claims.append(Claim(tuple(edges), feature, children))
    return claims
