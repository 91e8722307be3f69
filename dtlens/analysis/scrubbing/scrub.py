"""Causal scrubbing: how much of a metric a hypothesis keeps when everything else is resampled.

For every reference input x of the dataset and ``n_samples`` draws, the hypothesis'
tree (:mod:`~dtlens.analysis.scrubbing.hypothesis`) is resolved into forward passes
("worlds", :mod:`~dtlens.analysis.scrubbing.engine`), drawing inputs as it goes:

- world 0 runs on x, with a random input r drawn uniformly from the dataset;
- a claim with feature f draws x' uniformly among the inputs equivalent to its parent
  world's input under f (x itself for ``"identity"``); its edges then carry their
  senders' values on x' (no children), or as computed in the parent's world
  (``"identity"`` with children), or in a new world on x' with a fresh random input
  (another feature, with children);
- every edge no claim of a world names carries that world's random input's value.

The metric of world 0's logits, scored against x, averaged over references and draws,
is ``scrubbed``; ``clean`` is the metric of the model on x and ``resampled`` the metric
of the model on world 0's random inputs (the empty hypothesis, with the same draws), so

    recovered = (scrubbed - resampled) / (clean - resampled)

is 1 for the identity hypothesis and 0 for the empty one, by construction.

Relation to Chan et al. (2022), "Causal scrubbing": the claims are their
correspondence (each claim an interpretation node mapped to model senders and the
edges it is read through), the features their equivalence relations, and world 0's
random input their resampling of everything the hypothesis does not claim. Each
non-identity claim is a separate node of the treeified model with its own draw. Two
approximations keep the forward passes few: (1) senders a claim keeps with the
``"identity"`` relation stay in their parent's forward pass, so the unclaimed inputs
of all identity-linked senders share one random input per pass (the paper would draw
one per treeified copy); (2) the expectation is estimated by ``n_samples`` draws per
reference, not enumerated.

Examples:
    >>> import dtlens
    >>> from dtlens.analysis.scrubbing import decision_metric, memory_dataset
    >>> model = dtlens.load("memorydt")
    >>> data = memory_dataset(model, rtgs=(0.9, 0.0))
    >>> metric = decision_metric(model, data)
    >>> result = causal_scrubbing(model, data, metric, Hypothesis.identity())
    >>> round(result.clean, 3), round(result.resampled, 3), round(result.recovered, 3)
    (3.088, -0.002, 1.0)
    >>> round(causal_scrubbing(model, data, metric, Hypothesis.empty()).recovered, 3) + 0.0
    0.0
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from dtlens.analysis.circuits.graph import DTGraph
from dtlens.analysis.circuits.nodes import Embed
from dtlens.analysis.metrics import restored_logit_diff
from dtlens.analysis.scrubbing.data import ScrubbingDataset
from dtlens.analysis.scrubbing.engine import CleanCache, Source, World, scrub_forward
from dtlens.analysis.scrubbing.hypothesis import (
    IDENTITY,
    Claim,
    Hypothesis,
    inputs_of,
    resolve_edges,
)
from dtlens.errors import ConfigError, DTLensError, HypothesisError
from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = ["ScrubMetric", "Scrubber", "ScrubbingResult", "causal_scrubbing"]

#: ``metric(logits [rows, pos, action], index [rows]) -> [rows]``, scored against the
#: reference windows ``index``; a plain ``logits -> [rows]`` metric is accepted too.
ScrubMetric = Callable[..., Float[Tensor, " row"]]

#: The most forward passes one hypothesis may need (each a batch of all draws).
MAX_WORLDS = 64


@dataclass(frozen=True)
class ScrubbingResult:
    """A hypothesis' scrubbed metric against the clean and fully resampled ones.

    Attributes:
        hypothesis: the hypothesis' name.
        clean: mean metric of the model on the reference inputs.
        resampled: mean metric (scored against the references) of the model on random
            inputs: every edge resampled.
        scrubbed: mean metric of the scrubbed model.
        recovered: ``(scrubbed - resampled) / (clean - resampled)``.
        stderr: the Monte Carlo standard error of ``recovered`` (delta method, from the
            spread between the draws of each reference; 0 for the identity and empty
            hypotheses, whose ``recovered`` is exact).
        values: the scrubbed metric per row (row ``i * n_samples + k``: reference i, draw k).
        draws: the dataset indices drawn, per row: ``"reference"``, ``"random"`` (world
            0's random input), and for each claim by its path in the tree (``"0"``, ``"0.1"``,
            ...) the equivalent input ``"claim PATH"`` and, if it starts a world, that
            world's ``"random PATH"``.
        n_samples: draws per reference.
        n_worlds: forward passes the hypothesis needed.
        seed: the seed of the draws.
    """

    hypothesis: str
    clean: float
    resampled: float
    scrubbed: float
    recovered: float
    stderr: float
    values: Float[Tensor, " row"]
    draws: dict[str, Int[Tensor, " row"]] = field(repr=False)
    n_samples: int
    n_worlds: int
    seed: int

    def summary(self) -> dict[str, float]:
        """The numbers, rounded to 4 decimals (for JSON)."""
        keys = ("clean", "resampled", "scrubbed", "recovered", "stderr")
        return {k: round(float(getattr(self, k)), 4) + 0.0 for k in keys}


class Scrubber:
    """A dataset's clean cache and metric, to scrub many hypotheses against.

    Args:
        model: the model (no hooks attached).
        dataset: the windows and their features (:class:`ScrubbingDataset`).
        metric: a :data:`ScrubMetric` (``(logits, index) -> [rows]``) or a plain
            ``logits -> [rows]`` metric.
        graph: the model's graph (default ``DTGraph(model)``; pass one with
            ``token_embeddings=`` for per-token embedding claims).

    Examples:
        >>> import dtlens
        >>> from dtlens.analysis.scrubbing import decision_metric, memory_dataset
        >>> model = dtlens.load("memorydt")
        >>> data = memory_dataset(model, rtgs=(0.9, 0.0))
        >>> scrubber = Scrubber(model, data, decision_metric(model, data))
        >>> [round(scrubber.run(h).recovered, 3) + 0.0 for h in (Hypothesis.identity(),
        ...  Hypothesis.empty())]
        [1.0, 0.0]
    """

    def __init__(
        self,
        model: HookedDecisionTransformer,
        dataset: ScrubbingDataset,
        metric: ScrubMetric,
        graph: DTGraph | None = None,
    ) -> None:
        if not isinstance(dataset, ScrubbingDataset):
            raise ConfigError(
                f"dataset must be a ScrubbingDataset (windows + features), got "
                f"{type(dataset).__name__}; build one with memory_dataset(model) or "
                "ScrubbingDataset(batch, features)."
            )
        self.model, self.dataset = model, dataset
        self.graph = DTGraph(model) if graph is None else graph
        self.cache = CleanCache(model, dataset.batch.to(model.device), self.graph)
        self._metric = _two_argument(metric)

    def metric(
        self, logits: Float[Tensor, "row pos action"], index: Int[Tensor, " row"]
    ) -> Float[Tensor, " row"]:
        """The metric of each row, checked (shape ``[rows]``, finite)."""
        values = self._metric(logits, index)
        if not isinstance(values, Tensor) or tuple(values.shape) != (logits.shape[0],):
            got = list(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise DTLensError(
                f"a scrubbing metric maps logits {list(logits.shape)} (and the reference "
                f"indices) to one value per row, shape [{logits.shape[0]}]; got {got}."
            )
        if not bool(torch.isfinite(values).all()):
            raise DTLensError("the metric returned NaN or infinite values.")
        return values.detach().float()

    def run(self, hypothesis: Hypothesis, n_samples: int = 32, seed: int = 0) -> ScrubbingResult:
        """Scrub one hypothesis (see :func:`causal_scrubbing`)."""
        if not isinstance(hypothesis, Hypothesis):
            raise HypothesisError(
                f"expected a Hypothesis, got {type(hypothesis).__name__}; wrap claims as "
                "Hypothesis([Claim(...), ...])."
            )
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ConfigError(f"n_samples must be a positive int, got {n_samples!r}.")
        n = len(self.dataset)
        reference = torch.arange(n).repeat_interleave(n_samples).to(self.model.device)
        plan = _Plan(self, torch.Generator().manual_seed(seed), reference, n_samples)
        plan.resolve(hypothesis.tree(self.graph), 0, None, "")
        plan.check()
        with torch.no_grad():
            scrubbed = self.metric(scrub_forward(self.cache, plan.worlds, plan.sources), reference)
            clean = self.metric(self.cache.readout(self.cache.final[reference]), reference)
            resampled = self.metric(
                self.cache.readout(self.cache.final[plan.worlds[0].random]), reference
            )
        scale = max(abs(float(clean.mean())), abs(float(resampled.mean())), 1.0)
        try:
            recovered = restored_logit_diff(
                scrubbed.mean(), clean.mean(), resampled.mean(), tol=1e-4 * scale
            )
        except DTLensError:
            raise DTLensError(
                f"the clean ({float(clean.mean()):.4g}) and fully resampled "
                f"({float(resampled.mean()):.4g}) metrics are equal: resampling every input "
                "does not change the metric, so there is nothing to recover. Use a dataset "
                "whose inputs the metric tells apart."
            ) from None
        # delta method: d recovered = (d scrubbed + (recovered - 1) d resampled) / gap,
        # and the draws of one reference are independent given it
        influence = (scrubbed + (recovered - 1) * resampled).view(n, n_samples)
        var = influence.var(1) if n_samples > 1 else torch.zeros(n)
        gap = (clean.mean() - resampled.mean()).abs()
        stderr = float((var.sum() / n_samples).sqrt() / n / gap)
        return ScrubbingResult(
            hypothesis.name or str(hypothesis),
            float(clean.mean()),
            float(resampled.mean()),
            float(scrubbed.mean()),
            float(recovered),
            stderr,
            scrubbed,
            plan.draws,
            n_samples,
            len(plan.worlds),
            seed,
        )


def causal_scrubbing(
    model: HookedDecisionTransformer,
    dataset: ScrubbingDataset,
    metric: ScrubMetric,
    hypothesis: Hypothesis,
    n_samples: int = 32,
    seed: int = 0,
    graph: DTGraph | None = None,
) -> ScrubbingResult:
    """Scrub ``hypothesis``: the share of the metric it keeps when all else is resampled.

    Args:
        model: the decision transformer (no hooks attached).
        dataset: windows and their features (:func:`memory_dataset`).
        metric: ``(logits, index) -> [rows]``, scored against the reference windows
            (:func:`decision_metric`), or ``logits -> [rows]``.
        hypothesis: the claims (:class:`Hypothesis`).
        n_samples: draws per reference input.
        seed: the draws' seed (world 0's random inputs depend on it alone, so every
            hypothesis scrubbed with one seed shares the ``resampled`` baseline).
        graph: the model's graph (default ``DTGraph(model)``).

    Returns:
        A :class:`ScrubbingResult` (``recovered``: 1 = the hypothesis keeps the clean
        metric, 0 = no better than resampling everything).

    Raises:
        HypothesisError: a claim the graph or the dataset cannot resolve.
        DTLensError: a metric of the wrong shape, or one resampling does not change.

    Examples:
        >>> import dtlens
        >>> from dtlens.analysis.scrubbing import decision_metric, memory_dataset
        >>> model = dtlens.load("memorydt")
        >>> data = memory_dataset(model, rtgs=(0.9, 0.0))
        >>> metric = decision_metric(model, data)
        >>> h = Hypothesis([Claim("L0H1", feature="instruction")], name="L0H1 alone")
        >>> round(causal_scrubbing(model, data, metric, h).recovered, 2) + 0.0  # all else random
        0.0
    """
    return Scrubber(model, dataset, metric, graph).run(hypothesis, n_samples, seed)


def _two_argument(metric: ScrubMetric) -> Callable[[Tensor, Tensor], Tensor]:
    """The metric as ``(logits, index) -> values`` (a one-argument metric ignores index)."""
    if not callable(metric):
        raise ConfigError(f"metric must be callable, got {type(metric).__name__}.")
    try:
        params = inspect.signature(metric).parameters.values()
    except (TypeError, ValueError):
        return metric
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    if len(positional) >= 2 or varargs:
        return metric
    return lambda logits, index: metric(logits)


class _Plan:
    """The worlds and sources of one hypothesis, drawn as the tree is walked."""

    def __init__(
        self, scrubber: Scrubber, generator: torch.Generator, reference: Tensor, n_samples: int
    ):
        self.scrubber, self.generator, self.n_samples = scrubber, generator, n_samples
        self.graph, self.dataset = scrubber.graph, scrubber.dataset
        self.device = reference.device
        self.worlds = [World(reference, self._uniform(reference.shape[0]))]
        self.draws = {"reference": reference, "random": self.worlds[0].random}
        self.sources: list[Source] = []
        self._claimed: list[dict] = [{}]  # per world: edge -> (source key, claim path)
        self._by_key: dict[tuple, Source] = {}
        self._live: list[set] = [set()]  # per world: the senders it computes for others
        self._pending: list[tuple] = []  # child claims' edges, to check against _live

    def check(self) -> None:
        """Every child claim's edge must end at an input of a sender its pass computes."""
        for world, edges, where, claim in self._pending:
            inputs = {r for s in self._live[world] for r in inputs_of(s, self.graph)}
            for edge in edges:
                if edge.receiver not in inputs:
                    names = ", ".join(sorted(map(str, inputs))) or "none"
                    raise HypothesisError(
                        f"{edge} (claim {where} {claim}): a child claim's edges must end at an "
                        "input of a sender computed in its forward pass (its parent's senders, "
                        f"or those of identity claims with children there: {names}); move the "
                        "claim to where its receiver is claimed."
                    )

    def _uniform(self, rows: int) -> Tensor:
        n = len(self.dataset)
        return self._stratified(torch.full((rows,), n)).to(self.device)

    def _stratified(self, counts: Tensor) -> Tensor:
        """A draw in ``0..counts[row] - 1`` per row, uniform for each row, stratified over
        the draws of each reference (Latin hypercube: draw k of a reference falls in the
        k-th of ``n_samples`` equal strata, in a random order), so every choice is drawn
        about equally often."""
        n_ref, per = counts.shape[0] // self.n_samples, self.n_samples
        order = torch.argsort(torch.rand(n_ref, per, generator=self.generator), dim=1)
        u = (order + torch.rand(n_ref, per, generator=self.generator)) / per
        return torch.minimum((u.flatten() * counts).long(), counts - 1)

    def _equivalent(self, feature, of: Tensor) -> Tensor:
        """For each row, a uniform draw among the windows equivalent to ``of[row]``."""
        if feature == IDENTITY:
            return of
        classes = self.dataset.classes(feature)
        order = torch.argsort(classes, stable=True)
        counts = torch.bincount(classes)
        starts = torch.cumsum(counts, 0) - counts
        cls = classes[of.cpu()]
        return order[starts[cls] + self._stratified(counts[cls])].to(self.device)

    def resolve(self, claims: Sequence[Claim], world: int, into, path: str) -> None:
        """Add ``claims`` (children of senders reading through ``into``) to ``world``."""
        for k, claim in enumerate(claims):
            where = f"{path}{k}"
            edges = resolve_edges(claim.edges, self.graph, into, check=False)
            senders = list(dict.fromkeys(e.sender for e in edges))
            if path:  # a child: checked once the senders of its pass are known
                self._pending.append((world, edges, where, claim))
            if claim.children is not None and all(isinstance(s, Embed) for s in senders):
                raise HypothesisError(
                    f"claim {where} {claim}: embeddings are computed from the input alone, "
                    "so their claims take no children (leave children=None)."
                )
            inner = [r for s in senders for r in inputs_of(s, self.graph)]
            parent_input = self.worlds[world].input
            identity = claim.feature == IDENTITY
            x = self._equivalent(claim.feature, parent_input)
            if not identity:
                self.draws[f"claim {where}"] = x
            if claim.children is None:
                key, source = ("self", world) if identity else ("claim", where), None
                if key not in self._by_key:
                    source = Source(world, self._empty_mask(), index=x)
            elif identity:
                key, source = ("live", world, world), None
                if key not in self._by_key:
                    source = Source(world, self._empty_mask(), live=world)
                self._live[world].update(senders)
                self.resolve(claim.children, world, inner, f"{where}.")
            else:
                if len(self.worlds) >= MAX_WORLDS:
                    raise HypothesisError(
                        f"the hypothesis needs more than {MAX_WORLDS} forward passes (each "
                        "non-identity claim with children starts one); merge claims or give "
                        "fewer children."
                    )
                self.worlds.append(World(x, self._uniform(x.shape[0])))
                self._claimed.append({})
                self._live.append(set(senders))
                new = len(self.worlds) - 1
                self.draws[f"random {where}"] = self.worlds[new].random
                key, source = ("live", world, new), Source(world, self._empty_mask(), live=new)
                self.resolve(claim.children, new, inner, f"{where}.")
            if source is not None:
                self._by_key[key] = source
                self.sources.append(source)
            self._claim(world, edges, key, where, claim)

    def _claim(self, world: int, edges, key: tuple, where: str, claim: Claim) -> None:
        claimed, mask = self._claimed[world], self._by_key[key].mask
        for edge in edges:
            before = claimed.get(edge)
            if before is not None and before[0] != key:
                raise HypothesisError(
                    f"edge {edge} is claimed twice in one forward pass, by claim {before[1]} "
                    f"and by claim {where} {claim}, with different values; claim each edge "
                    "once per pass (merge the claims, or narrow their edges)."
                )
            claimed[edge] = (key, where)
            mask[self.graph.index(edge)] = True

    def _empty_mask(self) -> Tensor:
        return torch.zeros(len(self.graph.senders), len(self.graph.receivers), dtype=torch.bool)
