"""`dtlens.from_hf` against transformers' own DecisionTransformerModel forward.

Every expectation comes from the HuggingFace model (its ``action_preds``, its GPT-2
blocks' outputs, captured with torch hooks), from the converted model's public
forward with plain ``run_with_hooks`` hooks (a one-forward-per-patch reference for
the batched analyses), or from hand computations with its weights. The HF models
are randomly initialised here (nothing is downloaded), then every parameter is
perturbed so that no bias is 0 and no LayerNorm weight is 1: a forgotten term shows.
"""

from __future__ import annotations

import json

import pytest
import torch

import dtlens
from dtlens import BatchError, CheckpointError, ConfigError, DTConfig, TrajectoryBatch

transformers = pytest.importorskip(
    "transformers", reason="from_hf converts transformers models: pip install 'dtlens[hf]'"
)

ATOL = 1e-5
N_STEPS = 5
SHAPES = {
    # the Hopper-expert shape of the Hub's Gym decision transformers
    "hopper": dict(
        state_dim=11,
        act_dim=3,
        hidden_size=128,
        n_layer=3,
        n_head=1,
        max_ep_len=1000,
        activation_function="relu",
    ),
    "multihead-gelu": dict(
        state_dim=6,
        act_dim=2,
        hidden_size=48,
        n_layer=2,
        n_head=4,
        n_inner=80,
        max_ep_len=64,
        activation_function="gelu_new",
        layer_norm_epsilon=1e-6,
    ),
}

pytestmark = pytest.mark.usefixtures("one_thread")


def build_hf(shape: str, seed: int = 0, **overrides):
    """A seeded, randomly initialised HF decision transformer in eval mode."""
    torch.manual_seed(seed)
    config = transformers.DecisionTransformerConfig(
        **{**SHAPES[shape], **overrides}, bos_token_id=0, eos_token_id=0
    )
    hf = transformers.DecisionTransformerModel(config).eval()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, param in hf.named_parameters():
            if name.endswith("bias"):
                param.copy_(0.1 * torch.randn(param.shape, generator=g))
            elif "ln" in name:
                param.copy_(1 + 0.2 * torch.randn(param.shape, generator=g))
            else:
                param.add_(0.05 * torch.randn(param.shape, generator=g))
    return hf


def random_window(hf, batch_size: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """HF-style inputs of N_STEPS steps (actions for every step, as HF takes them)."""
    cfg, g = hf.config, torch.Generator().manual_seed(seed)
    return {
        "states": torch.randn(batch_size, N_STEPS, cfg.state_dim, generator=g),
        "actions": torch.rand(batch_size, N_STEPS, cfg.act_dim, generator=g) * 2 - 1,
        "returns_to_go": 3 * torch.rand(batch_size, N_STEPS, 1, generator=g),
        "timesteps": torch.randint(0, cfg.max_ep_len - N_STEPS, (batch_size, 1), generator=g)
        + torch.arange(N_STEPS),
    }


def as_batch(window: dict[str, torch.Tensor], final_action: bool = True, mask=None):
    actions = window["actions"] if final_action else window["actions"][:, :-1]
    return TrajectoryBatch(
        obs=window["states"],
        actions=actions,
        rtg=window["returns_to_go"][..., 0],
        timesteps=window["timesteps"],
        padding_mask=None if mask is None else mask.bool(),
    )


def hf_run(hf, window, mask=None):
    """HF's action_preds, final hidden state and every block's input/output residual."""
    resid = {}
    handles = [
        hf.encoder.h[0].register_forward_pre_hook(
            lambda _m, args: resid.__setitem__("pre", args[0])
        )
    ]
    for layer, block in enumerate(hf.encoder.h):
        handles.append(
            block.register_forward_hook(
                lambda _m, _a, out, layer=layer: resid.__setitem__(
                    layer, out[0] if isinstance(out, tuple) else out
                )
            )
        )
    try:
        with torch.no_grad():
            out = hf(**window, attention_mask=mask, return_dict=True)
    finally:
        for handle in handles:
            handle.remove()
    return out.action_preds, out.last_hidden_state, resid


def left_padding_mask(batch_size: int = 3) -> torch.Tensor:
    mask = torch.ones(batch_size, N_STEPS, dtype=torch.long)
    mask[0, :2] = 0
    if batch_size > 1:
        mask[1, :1] = 0
    return mask


@pytest.fixture(scope="module", params=list(SHAPES))
def pair(request):
    hf = build_hf(request.param)
    return hf, dtlens.from_hf(hf, n_timesteps=N_STEPS)


# ------------------------------------------------------------- exact equivalence
@pytest.mark.parametrize("final_action", [True, False], ids=["3T-tokens", "3T-1-tokens"])
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left-padded"])
def test_predictions_and_every_residual_match_transformers(pair, final_action, padded):
    hf, model = pair
    window = random_window(hf)
    mask = left_padding_mask() if padded else None
    hf_preds, hf_final, hf_resid = hf_run(hf, window, mask)
    batch = as_batch(window, final_action, mask)
    with torch.no_grad():
        preds, cache = model.run_with_cache(batch)
    n_tokens = batch.n_tokens(3)
    real = torch.ones(3, N_STEPS, dtype=torch.bool) if mask is None else mask.bool()
    real_tokens = real.repeat_interleave(3, dim=1)[:, :n_tokens]

    def assert_real_close(ours, theirs):
        torch.testing.assert_close(
            ours[real_tokens], theirs[:, :n_tokens][real_tokens], atol=ATOL, rtol=0
        )

    assert_real_close(cache["blocks.0.hook_resid_pre"], hf_resid["pre"])
    for layer in range(model.cfg.n_layers):
        assert_real_close(cache[f"blocks.{layer}.hook_resid_post"], hf_resid[layer])
    assert_real_close(cache["ln_final.hook_out"], hf_final)
    state_preds = model.action_logits(batch)
    torch.testing.assert_close(state_preds[real], hf_preds[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(preds[:, model.state_positions(N_STEPS)], state_preds)


def test_save_pretrained_directory_round_trip(tmp_path):
    hf = build_hf("multihead-gelu", seed=3)
    hf.save_pretrained(tmp_path)
    model = dtlens.from_hf(tmp_path, n_timesteps=N_STEPS)
    assert model.cfg == dtlens.from_hf(hf, n_timesteps=N_STEPS).cfg
    window = random_window(hf, seed=4)
    hf_preds, _, _ = hf_run(hf, window)
    with torch.no_grad():
        preds = model.action_logits(as_batch(window))
    torch.testing.assert_close(preds, hf_preds, atol=ATOL, rtol=0)
    assert str(tmp_path) in model.metadata["converted_from"]


def test_config_follows_the_hf_config():
    hf = build_hf("hopper")
    cfg = dtlens.from_hf(hf).cfg
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp) == (3, 128, 1, 128, 512)
    assert (cfg.obs_shape, cfg.n_actions, cfg.max_timestep, cfg.act_fn) == ((11,), 3, 999, "relu")
    assert cfg.n_ctx == 3 * (1024 // 3) and cfg.action_tanh and cfg.continuous_actions
    no_tanh = dtlens.from_hf(build_hf("multihead-gelu", action_tanh=False), n_timesteps=N_STEPS)
    assert not no_tanh.cfg.action_tanh and "hook_action_pre_tanh" not in no_tanh.hook_dict


def test_dtlens_checkpoint_round_trip(tmp_path):
    hf = build_hf("multihead-gelu", seed=5)
    model = dtlens.from_hf(hf, n_timesteps=N_STEPS)
    dtlens.save(model, tmp_path / "ckpt")
    loaded = dtlens.load(tmp_path / "ckpt")
    assert loaded.cfg == model.cfg
    batch = as_batch(random_window(hf, seed=6))
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch), model(batch), atol=0, rtol=0)


# ------------------------------------------------------------------- hook points
def test_hooks_around_the_tanh_position_embedding_and_embeddings(pair):
    hf, model = pair
    batch = as_batch(random_window(hf), final_action=False)
    with torch.no_grad():
        preds, cache = model.run_with_cache(batch)
    pre, post = cache["hook_action_pre_tanh"], cache["hook_action_post_tanh"]
    torch.testing.assert_close(post, torch.tanh(pre))
    torch.testing.assert_close(post, preds)
    torch.testing.assert_close(cache["unembed.hook_out"], preds)
    with torch.no_grad():
        zeroed = model.run_with_hooks(
            batch, fwd_hooks=[("hook_action_pre_tanh", lambda act, hook: torch.zeros_like(act))]
        )
    assert zeroed.abs().max() == 0
    wpe0 = hf.encoder.wpe.weight[0].detach()
    torch.testing.assert_close(cache["hook_pos_embed"][0], wpe0.expand(batch.n_tokens(3), -1))
    d_model = model.cfg.d_model
    steps = {"rtg": N_STEPS, "state": N_STEPS, "action": N_STEPS - 1, "time": N_STEPS}
    for kind, n_steps in steps.items():
        name = f"hook_{kind}_embed"
        assert tuple(cache[name].shape) == (3, n_steps, d_model), name
    # the state token is embed_ln(state embedding + time embedding)
    s1 = model.embed_ln(cache["hook_state_embed"][:, 0] + cache["hook_time_embed"][:, 0])
    torch.testing.assert_close(cache["hook_embed"][:, 1], s1)


def test_pad_context_pads_continuous_windows_without_changing_predictions(pair):
    hf, model = pair
    window = random_window(hf, batch_size=2)
    short = TrajectoryBatch(
        obs=window["states"][:, :2],
        actions=window["actions"][:, :1],
        rtg=window["returns_to_go"][:, :2, 0],
        timesteps=window["timesteps"][:, :2],
    )
    padded = model.pad_context(short)
    assert padded.n_steps == N_STEPS and padded.padding_mask[:, :3].logical_not().all()
    assert padded.actions[:, :3].abs().sum() == 0 and padded.actions.shape[-1] == hf.config.act_dim
    with torch.no_grad():
        torch.testing.assert_close(
            model.action_logits(padded)[:, -2:], model.action_logits(short), atol=ATOL, rtol=0
        )


# ---------------------------------------------------------------- analysis API
def first_action(preds: torch.Tensor) -> torch.Tensor:
    """The predicted first action dimension at the last state token, per pair."""
    return preds[:, -1, 0]


@pytest.fixture(scope="module")
def small():
    """The multi-head model and 2 clean/corrupt pairs differing in the last state and RTG."""
    hf = build_hf("multihead-gelu", seed=1)
    model = dtlens.from_hf(hf, n_timesteps=N_STEPS)
    window = random_window(hf, batch_size=2, seed=7)
    clean = as_batch(window, final_action=False)
    obs = clean.obs.clone()
    obs[:, -1] = torch.randn(obs[:, -1].shape, generator=torch.Generator().manual_seed(8))
    rtg = clean.rtg.clone()
    rtg[:, -1] += 1.0
    corrupt = clean.replace(obs=obs, rtg=rtg)
    return model, clean, corrupt


def naive_patch(model, base, source, hook_name, index):
    """One full forward of ``base`` with the source activation at ``index`` (after batch)."""
    _, cache = model.run_with_cache(source, names_filter=hook_name)

    def write(act, hook):
        act = act.clone()
        act[(slice(None), *index)] = cache[hook_name][(slice(None), *index)]
        return act

    with torch.no_grad():
        return first_action(model.run_with_hooks(base, fwd_hooks=[(hook_name, write)]))


@pytest.mark.parametrize(
    ("hook", "by", "template"),
    [
        ("resid_pre", ("layer", "pos"), "blocks.{}.hook_resid_pre"),
        ("mlp_out", ("layer", "pos"), "blocks.{}.hook_mlp_out"),
        ("z", ("layer", "head"), "blocks.{}.attn.hook_z"),
        ("state_embed", ("pos",), "hook_state_embed"),
    ],
)
def test_activation_patching_matches_one_forward_per_patch(small, hook, by, template):
    model, clean, corrupt = small
    result = dtlens.activation_patching(
        model, clean, corrupt, first_action, hook, by, normalize=False, show_progress=False
    )
    sizes = result.values.shape
    layers = range(model.cfg.n_layers) if "layer" in by else [None]
    for i, layer in enumerate(layers):
        for j in range(sizes[-1]):
            index = (slice(None), j) if hook == "z" else (j,)
            expected = naive_patch(model, corrupt, clean, template.format(layer), index).mean()
            got = result.values[i, j] if "layer" in by else result.values[j]
            torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_activation_patching_invariants(small):
    """Patching what does not differ gives the base run; the last state token restores all."""
    model, clean, corrupt = small
    result = dtlens.activation_patching(
        model, clean, corrupt, first_action, "resid_pre", show_progress=False
    )
    labels = result.labels["pos"]
    last_rtg = labels.index(f"R{N_STEPS}")
    # resid_pre of layer 0 before R_T is the same in both runs: patching it changes nothing
    before = result.values[:, :last_rtg]
    torch.testing.assert_close(before, torch.zeros_like(before), atol=ATOL, rtol=0)
    # at layer 0 only R_T and S_T differ; in the last layer S_T carries everything
    torch.testing.assert_close(result.values[-1, -1], torch.tensor(1.0), atol=ATOL, rtol=0)
    base = first_action(model(corrupt)).detach()
    torch.testing.assert_close(result.info["corrupt_metric"], base)


def test_path_patching_to_the_action_head_matches_a_hand_computation(small):
    model, clean, corrupt = small
    n_layers = model.cfg.n_layers
    with torch.no_grad():
        _, src = model.run_with_cache(clean)
        _, base = model.run_with_cache(corrupt)
    final = base[f"blocks.{n_layers - 1}.hook_resid_post"]

    def through_head(delta):
        with torch.no_grad():
            return first_action(model.forward_from_layer(final + delta, n_layers, corrupt)).mean()

    z = "blocks.0.attn.hook_z"
    head_write = (src[z] - base[z])[:, :, 2] @ model.core.W_O[0, 2]
    mlp = f"blocks.{n_layers - 1}.hook_mlp_out"
    for sender, delta in (("L0H2", head_write), (f"MLP{n_layers - 1}", src[mlp] - base[mlp])):
        value = dtlens.path_patching(
            model, clean, corrupt, sender, "logits", first_action, normalize=False
        )
        torch.testing.assert_close(value, through_head(delta), atol=ATOL, rtol=0)
    sweep = dtlens.path_patching_sweep(
        model, clean, corrupt, "logits", first_action, normalize=False, show_progress=False
    )
    torch.testing.assert_close(sweep.values[0, 2], through_head(head_write), atol=ATOL, rtol=0)


@pytest.mark.parametrize("by", ["component", "head"])
def test_dla_sums_to_the_pre_tanh_prediction(pair, by):
    hf, model = pair
    batch = as_batch(random_window(hf), final_action=False)
    with torch.no_grad():
        _, cache = model.run_with_cache(batch)
    pre_tanh = cache["hook_action_pre_tanh"]
    dla = dtlens.direct_logit_attribution(cache, model, by=by)
    assert dla.labels[-1] == "bias"
    torch.testing.assert_close(dla.total(), pre_tanh[:, -1], atol=ATOL, rtol=0)
    single = dtlens.direct_logit_attribution(cache, model, actions=1, timestep=1)
    torch.testing.assert_close(single.total(), pre_tanh[:, 4, 1], atol=ATOL, rtol=0)
    lens = dtlens.logit_lens(cache, model)
    torch.testing.assert_close(lens.values[-1], pre_tanh[:, -1], atol=ATOL, rtol=0)


def test_attention_plot_has_rsa_labels(small):
    model, clean, _ = small
    with torch.no_grad():
        _, cache = model.run_with_cache(clean, names_filter="blocks.1.attn.hook_pattern")
    labels = model.token_labels(clean)
    assert labels[:4] == ["R1", "S1", "A1", "R2"] and labels[-1] == f"S{N_STEPS}"
    fig = dtlens.plot_attention(cache, labels, layer=1, head=3)
    assert list(fig.data[0].x) == labels and list(fig.data[0].y) == labels


# ------------------------------------------------------------------------ errors
def test_non_decision_transformers_are_refused(tmp_path):
    gpt2 = transformers.GPT2Model(transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2))
    with pytest.raises(CheckpointError, match="takes a transformers DecisionTransformerModel"):
        dtlens.from_hf(gpt2)
    with pytest.raises(CheckpointError, match=r"has no config\.json"):
        dtlens.from_hf(tmp_path)
    with pytest.raises(CheckpointError, match="is not a directory"):
        dtlens.from_hf(tmp_path / "missing")
    gpt2.save_pretrained(tmp_path / "gpt2")
    with pytest.raises(CheckpointError, match="holds a 'gpt2' model"):
        dtlens.from_hf(tmp_path / "gpt2")
    (tmp_path / "empty").mkdir()
    config = {"model_type": "decision_transformer"}
    (tmp_path / "empty" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="cannot load the decision transformer"):
        dtlens.from_hf(tmp_path / "empty")
    # a broken config.json is named, whatever is wrong with it
    broken = tmp_path / "broken"
    broken.mkdir()
    for content, message in [
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b"[1, 2]", "is not a JSON object"),
        (b"{not json", "JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
    ]:
        (broken / "config.json").write_bytes(content)
        with pytest.raises(CheckpointError, match=message):
            dtlens.from_hf(broken)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
        ({"scale_attn_weights": False}, "scale_attn_weights=False"),
        ({"activation_function": "quick_gelu"}, "activation_function='quick_gelu'"),
    ],
)
def test_unsupported_variants_are_named(overrides, message):
    with pytest.raises(CheckpointError, match=message):
        dtlens.from_hf(build_hf("multihead-gelu", **overrides))


def test_bad_context_and_batches_are_named(pair):
    hf, model = pair
    with pytest.raises(ConfigError, match="n_timesteps=0 must be a positive int"):
        dtlens.from_hf(hf, n_timesteps=0)
    window = random_window(hf, batch_size=1)
    batch = as_batch(window)
    discrete = batch.replace(actions=torch.zeros(1, N_STEPS, dtype=torch.long))
    with pytest.raises(BatchError, match="takes continuous actions"):
        model(discrete)
    wrong_dim = batch.replace(actions=torch.zeros(1, N_STEPS, hf.config.act_dim + 1))
    with pytest.raises(BatchError, match=f"n_actions={hf.config.act_dim} action dimensions"):
        model(wrong_dim)
    with pytest.raises(BatchError, match="per-step shape"):
        model(batch.replace(obs=torch.zeros(1, N_STEPS, hf.config.state_dim + 1)))
    grid_cfg = DTConfig(n_layers=1, d_model=8, n_heads=2, d_mlp=8, n_ctx=15,
                        obs_shape=(1, 1, hf.config.state_dim),
                        max_timestep=hf.config.max_ep_len)  # fmt: skip
    grid = dtlens.HookedDecisionTransformer(grid_cfg)
    grid_batch = batch.replace(obs=batch.obs[..., None, None].transpose(2, 4))
    with pytest.raises(BatchError, match="takes discrete action indices"):
        grid(grid_batch)


def test_continuous_batches_validate_pad_and_concatenate():
    batch = TrajectoryBatch(torch.zeros(2, 3, 4), torch.ones(2, 2, 2), torch.zeros(2, 3),
                            torch.zeros(2, 3, dtype=torch.long))  # fmt: skip
    assert batch.continuous_actions and batch.n_tokens(3) == 8
    padded = batch.left_pad(5, pad_action=0.0)
    assert padded.actions.shape == (2, 4, 2) and padded.actions[:, :2].abs().sum() == 0
    assert TrajectoryBatch.cat([batch, batch[0]]).batch_size == 3
    with pytest.raises(BatchError, match="different window shapes"):
        TrajectoryBatch.cat([batch, batch.replace(actions=torch.ones(2, 2, 3))])
    with pytest.raises(BatchError, match=r"actions cover 5 steps .* \[2, 2, act_dim\]"):
        TrajectoryBatch(torch.zeros(2, 3, 4), torch.ones(2, 5, 2), torch.zeros(2, 3),
                        torch.zeros(2, 3, dtype=torch.long))  # fmt: skip
    with pytest.raises(BatchError, match=r"\[batch, step, state_dim\]"):
        TrajectoryBatch(torch.zeros(2, 3, 4, 4), torch.ones(2, 2, 2), torch.zeros(2, 3),
                        torch.zeros(2, 3, dtype=torch.long))  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"obs_shape": (7, 7, 20)}, r"must be one positive int \(state_dim,\)"),
        ({"model_type": "clone"}, "needs model_type='decision_transformer'"),
        ({"time_embedding": "linear"}, "needs time_embedding='embedding'"),
        ({"token_embedding": "gym"}, "token_embedding='gym' is not supported"),
        ({"token_embedding": "grid", "obs_shape": (7, 7, 20)}, "action_tanh=True only applies"),
    ],
)
def test_config_errors_name_field_and_value(changes, message):
    fields = dict(n_layers=1, d_model=8, n_heads=2, d_mlp=8, n_ctx=14, obs_shape=(11,),
                  n_actions=3, token_embedding="huggingface", action_tanh=True)  # fmt: skip
    with pytest.raises(ConfigError, match=message):
        DTConfig(**{**fields, **changes})


def test_grid_configs_save_as_before():
    cfg = DTConfig(n_layers=1, d_model=8, n_heads=2, d_mlp=8, n_ctx=14)
    assert "token_embedding" not in cfg.to_dict() and "action_tanh" not in cfg.to_dict()
    assert DTConfig.from_dict(cfg.to_dict()) == cfg


def test_continuous_actions_are_named_a0_and_summed_embeddings_are_refused(small):
    """The analyses that assume MiniGrid actions or additive embeddings say so on HF models.

    Action dimensions are ``a0, a1, ...`` (not MiniGrid's names); ``embed_ln`` normalises
    the sum of the embeddings, so neither a split of ``hook_embed`` nor an embedding
    sender (path patching, the edge graph) exists, and each raises naming the fix.
    """
    from dtlens.analysis.circuits import DTGraph
    from dtlens.errors import ConfigError

    model, clean, corrupt = small
    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
    dla = dtlens.direct_logit_attribution(cache, model)
    assert dla.actions == tuple(f"a{i}" for i in range(model.cfg.n_actions))
    assert dtlens.direct_logit_attribution(cache, model, actions="a1").actions == "a1"
    with pytest.raises(ConfigError, match=r"unknown action .left.; valid names: a0, a1"):
        dtlens.direct_logit_attribution(cache, model, actions="left")
    with pytest.raises(ConfigError, match="pass split_embed=False"):
        dtlens.analysis.residual_decomposition(cache, split_embed=True)
    metric = lambda preds: preds[:, -2, 0]  # noqa: E731
    with pytest.raises(ConfigError, match="use heads and MLPs as senders"):
        dtlens.path_patching(model, clean, corrupt, "state_embed", "logits", metric)
    with pytest.raises(ConfigError, match="not separate senders"):
        DTGraph(model)
