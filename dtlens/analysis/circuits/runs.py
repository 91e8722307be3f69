"""The two cached runs path patching starts from: clean and corrupt, as base and source.

:class:`PathRuns` caches both runs in one forward, assigns the base/source roles of a
direction, resolves every node's positions and computes senders' writes; it is the
state :mod:`dtlens.analysis.circuits.path_patching`'s engine reads. :func:`metric_per_pair`
applies and checks a metric on rows grouped per pair.

Example:
    >>> from dtlens.analysis.circuits.nodes import Head
    >>> runs = PathRuns(model, clean, corrupt, metric, "denoise", "direct", True, [Head(0, 1)])
    >>> runs.write(Head(0, 1)).shape  # [batch, pos, d_model]
    torch.Size([2, 11, 32])
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import torch
from jaxtyping import Float
from torch import Tensor

from dtlens.analysis.circuits.node_io import sender_write
from dtlens.analysis.circuits.nodes import Receiver, Sender, resolve_positions, validate_node
from dtlens.analysis.metrics import MetricFn, metric_values
from dtlens.analysis.patching.engine import check_pair
from dtlens.errors import BatchError, ConfigError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.model.suffix import PrefixCache, build_prefix_cache, model_has_hooks

__all__ = ["PathRuns", "check_path_pair", "metric_per_pair"]


class PathRuns:
    """Cached clean and corrupt runs, in base/source roles, plus node positions.

    Attributes (besides the arguments): ``clean_metric`` / ``corrupt_metric`` /
    ``base_metric`` (``[B]``), ``base`` (the batch patched runs start from),
    ``base_cache`` / ``src_cache`` (dicts of the cached activations), ``base_logits``,
    ``positions`` (node -> token indices or None), ``labels``, ``n_tokens``, ``n_pairs``.
    """

    def __init__(
        self,
        model: HookedDecisionTransformer,
        clean: TrajectoryBatch,
        corrupt: TrajectoryBatch,
        metric: MetricFn,
        direction: str,
        mode: str,
        normalize: bool,
        nodes: Sequence[Sender | Receiver],
    ) -> None:
        if direction not in ("denoise", "noise"):
            raise ConfigError(f"direction must be 'denoise' or 'noise', got {direction!r}.")
        if mode not in ("direct", "freeze"):
            raise ConfigError(f"mode must be 'direct' or 'freeze', got {mode!r}.")
        if not isinstance(normalize, bool):
            raise ConfigError(f"normalize must be True or False, got {normalize!r}.")
        check_path_pair(model, clean, corrupt)
        cfg = model.cfg
        for node in nodes:
            validate_node(node, cfg)
        self.model, self.labels = model, model.token_labels(clean)
        self.n_tokens, self.n_pairs = len(self.labels), clean.batch_size
        self.positions = {
            n: resolve_positions(n.pos, self.labels, n) for n in nodes if hasattr(n, "pos")
        }
        names = [*model.embedding_hook_names, f"blocks.{cfg.n_layers - 1}.hook_resid_post"]
        for layer in range(cfg.n_layers):
            names += [f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.hook_resid_mid",
                      f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.hook_mlp_out"]  # fmt: skip
        n = clean.batch_size
        with torch.no_grad():  # one forward for both runs: a few windows leave the CPU idle
            logits, cache = model.run_with_cache(
                TrajectoryBatch.cat([clean, corrupt]), names_filter=names
            )
            clean_logits, corrupt_logits = logits[:n], logits[n:]
            self.clean_metric = metric_values(metric, clean_logits, n)
            self.corrupt_metric = metric_values(metric, corrupt_logits, n)
        clean_cache = {name: cache[name][:n] for name in names}
        corrupt_cache = {name: cache[name][n:] for name in names}
        denoise = direction == "denoise"
        self.base = corrupt if denoise else clean
        self.base_cache = corrupt_cache if denoise else clean_cache
        self.src_cache = clean_cache if denoise else corrupt_cache
        self.base_metric = self.corrupt_metric if denoise else self.clean_metric
        self.base_logits = corrupt_logits if denoise else clean_logits

    @cached_property
    def prefix(self) -> PrefixCache | None:
        """The base run for plain re-runs (:mod:`dtlens.model.suffix`); None if unusable.

        None when hooks are attached to the model (a plain re-run would skip them).
        """
        if model_has_hooks(self.model):
            return None
        n_layers = self.model.cfg.n_layers
        resid = {i: self.base_cache[f"blocks.{i}.hook_resid_pre"] for i in range(n_layers)}
        return build_prefix_cache(self.model, self.base, self.base_logits, resid)

    def base_act(self, name: str, n_rep: int) -> Tensor:
        """A cached base activation, each pair repeated ``n_rep`` times (rows b*n_rep + g)."""
        return self.base_cache[name].repeat_interleave(n_rep, dim=0)

    def src_act(self, name: str, n_rep: int) -> Tensor:
        """A cached source activation, repeated like :meth:`base_act`."""
        return self.src_cache[name].repeat_interleave(n_rep, dim=0)

    def write(self, sender: Sender) -> Tensor:
        """The sender's source-minus-base residual write at its positions."""
        return sender_write(
            self.model, sender, self.src_cache, self.base_cache, self.positions[sender]
        )


def check_path_pair(
    model: HookedDecisionTransformer, clean: TrajectoryBatch, corrupt: TrajectoryBatch
) -> None:
    """Raise BatchError unless both are valid batches for ``model`` with lined-up tokens.

    :func:`~dtlens.analysis.patching.engine.check_pair` (same batch size and window:
    obs, actions, RTG, timesteps and padding-mask shapes), then ``model.validate`` of
    each, then the same padding mask (a path's positions must line up).

    Example:
        >>> check_path_pair(model, clean, corrupt)  # None when they pair up
    """
    check_pair(clean, corrupt)
    for batch in (clean, corrupt):
        model.validate(batch)
    masks = [b.padding_mask for b in (clean, corrupt)]  # check_pair: both None or same shape
    if masks[0] is not None and not torch.equal(masks[0], masks[1]):
        raise BatchError(
            "clean and corrupt must have the same padding_mask (positions must line up); "
            "pad both the same way."
        )


def metric_per_pair(
    metric: MetricFn, logits: Float[Tensor, "row pos action"], n_pairs: int
) -> Float[Tensor, "group value"]:
    """The metric of each group of rows ``b * n_groups + g``, as ``[group, B]`` (or ``[group, 1]``).

    The metric is called once per group on that group's B rows, as a one-forward-per-
    patch loop would call it, so scalar metrics and metrics with per-pair targets work.

    Example:
        >>> logits = torch.zeros(6, 5, 7)  # 3 pairs x 2 groups
        >>> metric_per_pair(lambda x: x[:, -1, 0], logits, 3).shape
        torch.Size([2, 3])
    """
    n_groups = logits.shape[0] // n_pairs
    by_pair = logits.reshape(n_pairs, n_groups, *logits.shape[1:])
    return torch.stack([metric_values(metric, by_pair[:, g], n_pairs) for g in range(n_groups)])
