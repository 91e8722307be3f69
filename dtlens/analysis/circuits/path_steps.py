"""The receiver steps of path patching: step 2 of ``"freeze"`` mode and step 3 of both modes.

:func:`freeze_values` is step 2 of the IOI paper's path patching: the base input runs
with every head's ``z`` frozen to its base value except the senders' (which take the
source run's), and records each receiver's input. :func:`run_receivers` is step 3: the
base input runs again with the receivers' inputs replaced. ``"direct"`` mode computes
the receivers' inputs without a forward (:mod:`dtlens.analysis.circuits.path_patching`)
and shares step 3. With no hook attached to the model both steps run the blocks' plain
modules (:mod:`dtlens.model.suffix`); otherwise they run through the hooked model.

Examples:
    >>> from dtlens.analysis.circuits.nodes import HeadInput
    >>> start_layer(HeadInput(1, 0, "q"), n_layers=2)
    1
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor

from dtlens.analysis.circuits.node_io import receiver_hook, receiver_inputs
from dtlens.analysis.circuits.nodes import (
    Embed,
    Head,
    HeadInput,
    Logits,
    MLPInput,
    Receiver,
    ResidPre,
    Sender,
)
from dtlens.analysis.circuits.runs import PathRuns
from dtlens.model.suffix import forward_suffix

__all__ = ["freeze_values", "run_receivers", "start_layer"]


def start_layer(node: Sender | Receiver, n_layers: int) -> int:
    """The layer whose ``hook_resid_pre`` a patched run must start from to cover ``node``."""
    if isinstance(node, Embed):
        return 0
    return n_layers if isinstance(node, Logits) else node.layer


def freeze_values(
    runs: PathRuns,
    groups: Sequence[tuple[Sender, ...]],
    receivers: tuple[Receiver, ...],
    freeze_mlps: bool,
) -> dict[Receiver, Tensor]:
    """Step 2 of IOI path patching: receiver inputs with everything but the senders frozen."""
    model, cfg, n = runs.model, runs.model.cfg, len(groups)
    n_pos = runs.n_tokens
    nodes = [s for g in groups for s in g] + list(receivers)
    start = min(start_layer(node, cfg.n_layers) for node in nodes)
    resid = runs.base_act(f"blocks.{start}.hook_resid_pre", n)
    if any(isinstance(s, Embed) for g in groups for s in g):
        zero = torch.zeros_like(runs.base_cache["blocks.0.hook_resid_pre"])
        sums = [sum((runs.write(s) for s in g if isinstance(s, Embed)), zero) for g in groups]
        resid = resid + rearrange(torch.stack(sums), "g b p d -> (b g) p d")
    hooks = []
    for layer in range(start, cfg.n_layers):
        z_mask = torch.zeros(n, n_pos, cfg.n_heads, 1, dtype=torch.bool, device=model.device)
        mlp_mask = torch.zeros(n, n_pos, 1, dtype=torch.bool, device=model.device)
        for i, group in enumerate(groups):
            for s in group:
                if isinstance(s, Embed) or s.layer != layer:
                    continue
                where = runs.positions[s]
                where = slice(None) if where is None else where
                if isinstance(s, Head):
                    z_mask[i, where, s.head] = True
                else:
                    mlp_mask[i, where] = True
        z_mask, mlp_mask = z_mask.repeat(runs.n_pairs, 1, 1, 1), mlp_mask.repeat(runs.n_pairs, 1, 1)
        z_name, mlp_name = f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.hook_mlp_out"
        hooks.append(
            (z_name, partial(_mix, z_mask, runs.base_act(z_name, n), runs.src_act(z_name, n)))
        )
        if freeze_mlps:
            base_mlp = runs.base_act(mlp_name, n)
            hooks.append((mlp_name, partial(_mix, mlp_mask, base_mlp, runs.src_act(mlp_name, n))))
        elif bool(mlp_mask.any()):
            hooks.append((mlp_name, partial(_mix_live, mlp_mask, runs.src_act(mlp_name, n))))
    if runs.prefix is not None:
        return _frozen_inputs(runs, resid, start, dict(hooks), receivers, freeze_mlps)
    store: dict[Receiver, Tensor] = {}
    for name, at_hook in _by_hook(receivers).items():
        hooks.append((name, partial(_capture, store, at_hook)))
    with model.hooks(hooks):
        model.forward_from_layer(resid, start, runs.base.repeat(n))
    return store


def _frozen_inputs(
    runs: PathRuns,
    resid: Float[Tensor, "row pos d_model"],
    start: int,
    mixers: dict[str, Callable],
    receivers: tuple[Receiver, ...],
    freeze_mlps: bool,
) -> dict[Receiver, Tensor]:
    """Step 2 without running attention: every head's ``z`` is fixed, so only MLPs compute.

    ``mixers`` are the step's hook functions by hook name: every layer's ``hook_z``
    mixer, and the ``hook_mlp_out`` mixers (every layer's fixed output with
    ``freeze_mlps``, else the live output with the senders' at their positions, where
    an MLP sends). Each layer adds ``z W_O + b_O`` of the mixed ``z`` and its MLP's
    output. Receivers read the residual stream where their hooks would: ``resid_pre``
    (q/k/v, through :func:`receiver_inputs`), ``resid_mid`` (MLP input), the final
    residual (logits).
    """
    model, blocks = runs.model, runs.prefix.blocks
    store: dict[Receiver, Tensor] = {}
    for layer in range(start, model.cfg.n_layers):
        store |= {r: resid for r in receivers if isinstance(r, ResidPre) and r.layer == layer}
        readers = [r for r in receivers if isinstance(r, HeadInput) and r.layer == layer]
        store |= receiver_inputs(model, readers, resid)
        z = mixers[f"blocks.{layer}.attn.hook_z"](None, None)
        attn = model.core.blocks[layer].attn
        resid = resid + torch.einsum("bphe,hed->bpd", z, attn.W_O) + attn.b_O
        store |= {r: resid for r in receivers if isinstance(r, MLPInput) and r.layer == layer}
        block = blocks[layer]
        if block.mlp is None:
            continue
        mixer = mixers.get(f"blocks.{layer}.hook_mlp_out")
        if freeze_mlps:  # a frozen MLP's output is fixed: nothing to compute
            resid = resid + mixer(None, None)
            continue
        mlp_out = block.mlp(block.ln2(resid))
        resid = resid + (mlp_out if mixer is None else mixer(mlp_out, None))
    store |= {r: resid for r in receivers if isinstance(r, Logits)}
    return store


def run_receivers(runs: PathRuns, n: int, values: dict[Receiver, Tensor]) -> Tensor:
    """Step 3: the base run (n rows per pair) with every receiver's input replaced."""
    model, n_layers = runs.model, runs.model.cfg.n_layers
    rows = runs.base.repeat(n)
    if Logits() in values:  # the final residual is replaced: nothing upstream matters
        return model.forward_from_layer(values[Logits()], n_layers, rows)
    for r in values:  # the whole stream entering a block is replaced (given alone)
        if isinstance(r, ResidPre):
            return model.forward_from_layer(values[r], r.layer, rows)
    start = min(start_layer(r, n_layers) for r in values)
    if all(isinstance(r, HeadInput) for r in values) and runs.prefix is not None:
        return _run_head_receivers(runs, n, values, start)
    hooks = [(name, partial(_replace, rs, values)) for name, rs in _by_hook(list(values)).items()]
    with model.hooks(hooks):
        return model.forward_from_layer(
            runs.base_act(f"blocks.{start}.hook_resid_pre", n), start, rows
        )


def _run_head_receivers(
    runs: PathRuns, n: int, values: dict[Receiver, Tensor], start: int
) -> Float[Tensor, "row pos action"]:
    """Step 3 for head-input receivers only, without hooks (same numbers, less overhead)."""
    by_input: dict[tuple[int, str], list[HeadInput]] = {}
    for r in values:
        by_input.setdefault((r.layer, r.kind), []).append(r)
    head_inputs = {
        key: ([r.head for r in rs], torch.stack([values[r] for r in rs], dim=2))
        for key, rs in by_input.items()
    }
    pair = torch.arange(runs.n_pairs, device=runs.base_logits.device).repeat_interleave(n)
    resid = runs.base_act(f"blocks.{start}.hook_resid_pre", n)
    return forward_suffix(runs.model, runs.prefix, resid, start, 0, pair, head_inputs=head_inputs)


def _mix(mask: Tensor, base: Tensor, src: Tensor, act: Tensor, hook: object) -> Tensor:
    return torch.where(mask, src, base)


def _mix_live(mask: Tensor, src: Tensor, act: Tensor, hook: object) -> Tensor:
    return torch.where(mask, src, act)


def _by_hook(receivers: Sequence[Receiver]) -> dict[str, list[Receiver]]:
    """Receivers grouped by the hook holding their input (one hook per point is cheaper)."""
    out: dict[str, list[Receiver]] = {}
    for r in receivers:
        out.setdefault(receiver_hook(r), []).append(r)
    return out


def _capture(store: dict, receivers: list[Receiver], act: Tensor, hook: object) -> None:
    for r in receivers:
        store[r] = (act[:, :, r.head] if isinstance(r, HeadInput) else act).clone()


def _replace(receivers: list[Receiver], values: dict, act: Tensor, hook: object) -> Tensor:
    if not isinstance(receivers[0], HeadInput):
        return values[receivers[0]]
    act = act.clone()
    for r in receivers:
        act[:, :, r.head] = values[r]
    return act
