"""An independent plain-torch forward of the original DecisionTransformerInterpretability DT.

Written from the original project's description and parameter shapes only: it reads
the *original* state dict keys (``transformer.blocks.0.attn.W_Q`` ...), never calls a
dtlens module, and spells out every step (embeddings, token interleaving, LayerNorm,
attention, MLP, head). Tests compare dtlens against it.

Also builds random original-format checkpoints for every supported variant, so the
converter and the model are checked on more than the one real file.
"""

from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F
from torch import Tensor

ACT = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


def _norm(x: Tensor, kind: str | None, w: Tensor | None, b: Tensor | None, eps: float) -> Tensor:
    if kind is None:
        return x
    centred = x - x.mean(-1, keepdim=True)
    normed = centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + eps)
    return normed if kind == "LNPre" else normed * w + b


def reference_forward(
    raw: dict, obs: Tensor, actions: Tensor, rtg: Tensor, timesteps: Tensor
) -> dict[str, Tensor]:
    """Run an original checkpoint dict on one batch; returns logits and intermediates.

    Keys of the result: ``logits [B,P,A]``, ``resid_pre.{l}``, ``pattern.{l}``
    ``[B,H,P,P]``, ``resid_final`` (before ln_final), ``tokens`` (before W_pos).
    """
    sd = raw["model_state_dict"]
    mc = json.loads(raw["model_config"])
    layer_norm = mc.get("layer_norm", "LN")
    norm = {True: "LN", False: None, "LN": "LN", "LNPre": "LNPre", None: None}[layer_norm]
    act = ACT[mc.get("activation_fn", "relu")]
    eps = 1e-5
    n_layers, n_heads = mc["n_layers"], mc["n_heads"]
    d_head = mc["d_model"] // n_heads

    batch, steps = obs.shape[:2]
    # (batch, step, x, y, channel) -> (batch, step, channel*x*y), channel slowest
    flat = obs.permute(0, 1, 4, 2, 3).reshape(batch, steps, -1).float()
    state = flat @ sd["state_embedding.weight"].T
    rtg_e = rtg.unsqueeze(-1).float() @ sd["reward_embedding.0.weight"].T
    act_e = sd["action_embedding.0.weight"][actions]
    if mc.get("time_embedding_type", "embedding") == "linear":
        time = timesteps.unsqueeze(-1).float() @ sd["time_embedding.weight"].T
        if "time_embedding.bias" in sd:
            time = time + sd["time_embedding.bias"]
    else:
        time = sd["time_embedding.weight"][timesteps]

    tokens = []
    for t in range(steps):
        tokens.append(rtg_e[:, t] + time[:, t])
        tokens.append(state[:, t] + time[:, t])
        if t < actions.shape[1]:
            tokens.append(act_e[:, t] + time[:, t])
    x = torch.stack(tokens, dim=1)
    out: dict[str, Tensor] = {"tokens": x}
    n_pos = x.shape[1]
    x = x + sd["transformer.pos_embed.W_pos"][:n_pos]
    causal = torch.tril(torch.ones(n_pos, n_pos, dtype=torch.bool))

    def p(name: str) -> Tensor:
        return sd[f"transformer.{name}"]

    for layer in range(n_layers):
        pre = f"blocks.{layer}."
        out[f"resid_pre.{layer}"] = x
        h = _norm(
            x, norm, sd.get(f"transformer.{pre}ln1.w"), sd.get(f"transformer.{pre}ln1.b"), eps
        )
        q = torch.einsum("bpd,hde->bphe", h, p(pre + "attn.W_Q")) + p(pre + "attn.b_Q")
        k = torch.einsum("bpd,hde->bphe", h, p(pre + "attn.W_K")) + p(pre + "attn.b_K")
        v = torch.einsum("bpd,hde->bphe", h, p(pre + "attn.W_V")) + p(pre + "attn.b_V")
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(d_head)
        scores = scores.masked_fill(~causal, float("-inf"))
        pattern = scores.softmax(dim=-1)
        out[f"pattern.{layer}"] = pattern
        z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
        x = x + torch.einsum("bqhe,hed->bqd", z, p(pre + "attn.W_O")) + p(pre + "attn.b_O")
        h2 = _norm(
            x, norm, sd.get(f"transformer.{pre}ln2.w"), sd.get(f"transformer.{pre}ln2.b"), eps
        )
        if mc.get("gated_mlp", False):
            post = act(h2 @ p(pre + "mlp.W_gate")) * (h2 @ p(pre + "mlp.W_in")) + p(
                pre + "mlp.b_in"
            )
        else:
            post = act(h2 @ p(pre + "mlp.W_in") + p(pre + "mlp.b_in"))
        x = x + post @ p(pre + "mlp.W_out") + p(pre + "mlp.b_out")
    out["resid_final"] = x
    final = _norm(x, norm, sd.get("transformer.ln_final.w"), sd.get("transformer.ln_final.b"), eps)
    out["logits"] = final @ sd["action_predictor.weight"].T + sd["action_predictor.bias"]
    return out


def random_original_checkpoint(
    *,
    n_layers: int = 2,
    d_model: int = 32,
    n_heads: int = 4,
    d_mlp: int = 48,
    n_ctx: int = 26,
    layer_norm: str | None = "LN",
    gated_mlp: bool = False,
    activation_fn: str = "relu",
    time_embedding_type: str = "embedding",
    time_bias: bool = False,
    channels: int = 20,
    max_steps: int = 50,
    n_actions: int = 7,
    seed: int = 0,
) -> dict:
    """A random checkpoint dict in the original project's format for one variant."""
    g = torch.Generator().manual_seed(seed)
    # Without normalisation activations grow layer by layer: keep them O(1) so a
    # float32 comparison at 1e-5 stays meaningful.
    base = 0.3 if layer_norm else 0.1

    def r(*shape: int, scale: float = 1.0) -> Tensor:
        return base * scale * torch.randn(*shape, generator=g)

    d_head = d_model // n_heads
    state_dim = 7 * 7 * channels
    sd: dict[str, Tensor] = {
        "state_embedding.weight": r(d_model, state_dim, scale=1 / 3),
        "reward_embedding.0.weight": r(d_model, 1),
        "action_embedding.0.weight": r(n_actions + 1, d_model),
        "transformer.pos_embed.W_pos": r(n_ctx, d_model),
        "action_predictor.weight": r(n_actions, d_model),
        "action_predictor.bias": r(n_actions),
        "state_predictor.weight": r(state_dim, d_model),
        "state_predictor.bias": r(state_dim),
        "reward_predictor.weight": r(1, d_model),
        "reward_predictor.bias": r(1),
    }
    if time_embedding_type == "linear":
        sd["time_embedding.weight"] = r(d_model, 1, scale=0.07)
        if time_bias:
            sd["time_embedding.bias"] = r(d_model)
    else:
        sd["time_embedding.weight"] = r(max_steps + 1, d_model)
    for layer in range(n_layers):
        pre = f"transformer.blocks.{layer}."
        if layer_norm == "LN":
            for ln in ("ln1", "ln2"):
                sd[pre + f"{ln}.w"] = 1 + r(d_model, scale=1 / 3)
                sd[pre + f"{ln}.b"] = r(d_model, scale=1 / 3)
        for w in ("W_Q", "W_K", "W_V"):
            sd[pre + f"attn.{w}"] = r(n_heads, d_model, d_head)
        for b in ("b_Q", "b_K", "b_V"):
            sd[pre + f"attn.{b}"] = r(n_heads, d_head, scale=1 / 3)
        sd[pre + "attn.W_O"] = r(n_heads, d_head, d_model)
        sd[pre + "attn.b_O"] = r(d_model, scale=1 / 3)
        sd[pre + "attn.mask"] = torch.tril(torch.ones(n_ctx, n_ctx, dtype=torch.bool))
        sd[pre + "attn.IGNORE"] = torch.tensor(-1e5)
        sd[pre + "mlp.W_in"] = r(d_model, d_mlp)
        sd[pre + "mlp.b_in"] = r(d_mlp, scale=1 / 3)
        if gated_mlp:
            sd[pre + "mlp.W_gate"] = r(d_model, d_mlp)
        sd[pre + "mlp.W_out"] = r(d_mlp, d_model)
        sd[pre + "mlp.b_out"] = r(d_model, scale=1 / 3)
    if layer_norm == "LN":
        sd["transformer.ln_final.w"] = 1 + r(d_model, scale=1 / 3)
        sd["transformer.ln_final.b"] = r(d_model, scale=1 / 3)
    model_config = {
        "d_model": d_model,
        "n_heads": n_heads,
        "d_mlp": d_mlp,
        "n_layers": n_layers,
        "n_ctx": n_ctx,
        "layer_norm": layer_norm,
        "gated_mlp": gated_mlp,
        "activation_fn": activation_fn,
        "state_embedding_type": "grid",
        "time_embedding_type": time_embedding_type,
        "seed": seed,
        "device": "cpu",
    }
    env_config = {
        "env_id": "MiniGrid-MemoryS7FixedStart-v0",
        "one_hot_obs": channels == 20,
        "max_steps": max_steps,
        "view_size": 7,
    }
    return {
        "model_state_dict": sd,
        "model_config": json.dumps(model_config),
        "environment_config": json.dumps(env_config),
        "offline_config": json.dumps({"model_type": "decision_transformer"}),
    }
