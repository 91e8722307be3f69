# %% [markdown]
# # dtlens tutorial: the MemoryDT post's analyses, step by step
#
# A notebook-style script (cells separated by `# %%`; open it as a notebook with
# jupytext or VS Code, or run it top to bottom). docs/tutorial.md shows it piece by
# piece, and tests/integration/test_tutorial.py runs it on a tiny random model.
#
#     python docs/tutorial.py [MODEL] [OUT_DIR]
#
# MODEL: "memorydt" (the shipped MemoryDT, default), a dtlens checkpoint directory or an
# original project .pt (or the DTLENS_TUTORIAL_MODEL environment variable). OUT_DIR:
# where the figures go as HTML files (default tutorial_figures/, or DTLENS_TUTORIAL_OUT).

# %%
# --8<-- [start:setup]
import os
import sys
from pathlib import Path

import torch

import dtlens
from dtlens import (
    activation_patching,
    congruence,
    direct_logit_attribution,
    logit_diff,
    logit_lens,
    patch_observation,
    path_patching,
    path_patching_sweep,
    plot_attention,
    plot_congruence,
    plot_patching,
    restored_logit_diff,
    set_rtg,
    swap_instruction,
)
from dtlens.analysis import instruction_swap_pair, layout_batch, per_layer_growth, rtg_pair
from dtlens.env import ACTION_NAMES
from dtlens.plotting import (
    attention_from_cache,
    plot_action_probabilities,
    plot_attention_comparison,
    plot_dla,
    plot_logit_lens,
)

MODEL = os.environ.get("DTLENS_TUTORIAL_MODEL", "memorydt")
OUT = Path(os.environ.get("DTLENS_TUTORIAL_OUT", "tutorial_figures"))
if "ipykernel" not in sys.modules and len(sys.argv) > 1:  # python docs/tutorial.py MODEL OUT
    MODEL = sys.argv[1]
    OUT = Path(sys.argv[2]) if len(sys.argv) > 2 else OUT
OUT.mkdir(parents=True, exist_ok=True)


def save(fig, name):
    """Write a figure as HTML; plotly.js is written once beside the figures (offline)."""
    fig.write_html(OUT / f"{name}.html", include_plotlyjs="directory")
    print(f"wrote {OUT / name}.html")


# --8<-- [end:setup]

# %% [markdown]
# ## Load the model

# %%
# --8<-- [start:load]
torch.set_grad_enabled(False)  # analysis only: no autograd graphs
model = dtlens.load(MODEL)  # in eval mode
print(model.cfg.n_layers, "layers,", model.cfg.n_heads, "heads,", model.cfg.n_ctx, "tokens")
print("short windows are padded as", model.context_padding)
# --8<-- [end:load]

# %% [markdown]
# ## A batch for one layout

# %%
# --8<-- [start:batch]
LAYOUT = "key/top-key"  # instruction key, key on top: the post's "exception" layout
batch = layout_batch(LAYOUT, rtg=0.9, model=model)  # padded the way the model asks
labels = model.token_labels(batch)
print(batch.obs.shape, batch.actions.tolist(), batch.timesteps.tolist())
print(labels)  # ['R1', 'S1', 'A1', ..., 'R9', 'S9']
# --8<-- [end:batch]

# %% [markdown]
# ## Run with cache

# %%
# --8<-- [start:cache]
logits, cache = model.run_with_cache(batch)
print(logits.shape)  # [batch, n_tokens, n_actions]: a prediction at every token
print(cache["hook_state_embed"].shape)  # [batch, step, d_model]: DT embedding hooks
print(cache["blocks.0.attn.hook_pattern"].shape)  # [batch, head, query, key]
print(cache["blocks.0.hook_resid_pre"].shape)  # [batch, pos, d_model]
# --8<-- [end:cache]

# %% [markdown]
# ## Action preferences

# %%
# --8<-- [start:preferences]
probs = model.action_logits(batch)[0].softmax(-1)  # [step, action], read at S_1..S_T
real = batch.obs[0].flatten(1).any(-1)  # padding views are all zero
steps = [f"S{t + 1}" for t in range(batch.n_steps)]
for name, p in zip(ACTION_NAMES, probs[-1].tolist(), strict=True):
    print(f"{name:>8} {p:.3f}")  # the decision at the end of the corridor
save(
    plot_action_probabilities(
        probs[real], step_labels=[s for s, r in zip(steps, real, strict=True) if r]
    ),
    "preferences_rtg_0.9",
)
# --8<-- [end:preferences]

# %% [markdown]
# ## Conditioning on a different return: `set_rtg`

# %%
# --8<-- [start:rtg]
low = set_rtg(batch, 0.0)  # a new batch: every RTG token set to 0
probs_low = model.action_logits(low)[0, -1].softmax(-1)
print("P(action) at the last step, RTG 0.9 vs 0.0:")
for name, hi, lo in zip(ACTION_NAMES, probs[-1].tolist(), probs_low.tolist(), strict=True):
    print(f"{name:>8} {hi:.3f} {lo:.3f}")
entropy = [-(p * p.log()).sum().item() for p in (probs[-1], probs_low)]
print(f"entropy (nats): RTG 0.9 {entropy[0]:.3f}, RTG 0.0 {entropy[1]:.3f}")
# --8<-- [end:rtg]

# %% [markdown]
# ## Editing an observation: swap the instruction

# %%
# --8<-- [start:edit]
swapped = patch_observation(batch, swap_instruction())  # key <-> ball wherever shown
changed = (swapped.obs != batch.obs).flatten(2).any(-1)[0]
print("steps whose view changed:", [s for s, c in zip(steps, changed, strict=True) if c])
for name, b in (("clean", batch), ("swapped", swapped)):
    print(name, "logit(left) - logit(right) at the last step:",
          round(logit_diff(model(b), "left", "right", model=model).item(), 3))  # fmt: skip
# --8<-- [end:edit]

# %% [markdown]
# ## Activation patching

# %%
# --8<-- [start:patching]
pair = instruction_swap_pair(LAYOUT, rtg=0.0, model=model)
print(pair.description)
metric = pair.metric(model)  # logit(answer) - logit(wrong) at the last state token
result = activation_patching(model, pair.clean, pair.corrupt, metric, "resid_pre")
print(result.axes, tuple(result.values.shape))  # ('layer', 'pos') [n_layers, n_tokens]
clean_ld, corrupt_ld = result.info["clean_metric"], result.info["corrupt_metric"]  # [pairs]
print(f"{metric.name}: clean {clean_ld.item():.3f}, corrupt {corrupt_ld.item():.3f}")
print("restored by resid_pre at L0 S5:", round(result.value(layer="0", pos="S5"), 3))
save(plot_patching(result, title="Instruction swap: residual stream"), "patching_resid_pre")
# --8<-- [end:patching]

# %%
# --8<-- [start:restored]
raw = activation_patching(model, pair.clean, pair.corrupt, metric, "resid_pre", normalize=False)
# (patched - corrupt) / (clean - corrupt) per pair, then averaged over the pairs:
restored = restored_logit_diff(raw.info["per_pair"], clean_ld, corrupt_ld).mean(-1)
print("same as result.values:", torch.allclose(restored, result.values, atol=1e-5))
# --8<-- [end:restored]

# %%
# --8<-- [start:patching_more]
for hook in ("attn_out", "mlp_out"):
    save(activation_patching(model, pair.clean, pair.corrupt, metric, hook).plot(),
         f"patching_{hook}")  # fmt: skip
heads = activation_patching(
    model, pair.clean, pair.corrupt, metric, "z", by=("layer", "head"), direction="noise"
)
save(heads.plot(title="Instruction swap: heads (noising)"), "patching_heads")

rtg = rtg_pair(pair, clean=0.0, corrupt=0.9)  # the post's second patch: RTG everywhere
mlp = activation_patching(model, rtg.clean, rtg.corrupt, rtg.metric(model), "mlp_out")
save(mlp.plot(title="RTG 0.0 -> 0.9: MLP outputs"), "patching_rtg_mlp_out")
# --8<-- [end:patching_more]

# %% [markdown]
# ## Path patching

# %%
# --8<-- [start:path_patching]
for mode in ("direct", "freeze"):
    value = path_patching(model, pair.clean, pair.corrupt, "MLP0", "logits", metric, mode=mode)
    print(f"MLP0 -> logits ({mode}): {value.item():.3f}")
last = model.cfg.n_layers - 1
queries = [f"L{last}H{h}.q" for h in range(model.cfg.n_heads)]
sweep = path_patching_sweep(model, pair.clean, pair.corrupt, queries, metric)
print(sweep.axes, tuple(sweep.values.shape))  # every sender head -> last layer's queries
save(sweep.plot(title=f"Heads -> layer {last} queries"), "path_patching_queries")
# --8<-- [end:path_patching]

# %% [markdown]
# ## Congruence

# %%
# --8<-- [start:congruence]
table = congruence(model)  # W_out @ W_U per layer: [layer, neuron, action]
growth = per_layer_growth(table, actions=("left", "right", "forward"))
print("max |congruence| per layer (rows) with left, right, forward:")
print(growth.values.round(decimals=3))
save(plot_congruence(table.values, action_names=table.labels["action"]), "congruence")
# --8<-- [end:congruence]

# %% [markdown]
# ## Attention at RTG 0 vs 0.9

# %%
# --8<-- [start:attention]
_, cache_low = model.run_with_cache(set_rtg(batch, 0.0))
_, cache_high = model.run_with_cache(set_rtg(batch, 0.9))
save(plot_attention(cache_high, labels, layer=0, head=0), "attention_L0H0")
save(
    plot_attention_comparison(
        attention_from_cache(cache_low, layer=0, head=0),
        attention_from_cache(cache_high, layer=0, head=0),
        labels,
        titles=("RTG 0.0", "RTG 0.9"),
        title="L0H0",
    ),
    "attention_L0H0_rtg",
)
# --8<-- [end:attention]

# %% [markdown]
# ## Direct logit attribution and the logit lens

# %%
# --8<-- [start:dla]
answer, wrong = ACTION_NAMES[pair.answer_action], ACTION_NAMES[pair.wrong_action]
_, cache_pair = model.run_with_cache(pair.clean)
dla = direct_logit_attribution(cache_pair, model, actions=(answer, wrong), by="head")
per_row = dict(zip(dla.labels, dla.values[:, 0].tolist(), strict=True))
print(dla.actions, {row: round(value, 2) for row, value in per_row.items()})
print("sum of the rows:", dla.total().tolist(), "the model's:", metric(model(pair.clean)).tolist())
save(plot_dla(dla.values[:, 0], dla.labels, value_name=dla.actions), "dla")
# --8<-- [end:dla]

# %%
# --8<-- [start:logit_lens]
lens = logit_lens(cache_pair, model)  # [stage, batch, action]: '0_pre', ..., 'final_post'
print(lens.labels)
save(plot_logit_lens(lens.values[:, 0], lens.labels), "logit_lens")
# --8<-- [end:logit_lens]
