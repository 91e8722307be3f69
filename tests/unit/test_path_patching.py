"""Path patching against hand computations and a plain, unbatched reference.

Independent expectations used here:

- the residual-stream decomposition: the base final residual plus every component's
  (source - base) write is the source final residual, so patching every sender into
  the logits gives the source run's logits;
- hand computations from a cache with ``torch.nn.functional.layer_norm`` and the
  weights (a head's write ``dz @ W_O``, a receiver head's ``LN1(x) @ W_Q + b_Q``, an
  MLP ``act(LN2(x) @ W_in + b_in) @ W_out + b_out``, the logits ``LN(x) @ W_U + b_U``);
- :func:`freeze_reference`, the three steps of IOI path patching written with plain
  ``run_with_hooks`` full forwards, one path at a time;
- invariants: a sender writing nothing changes nothing; freezing everything makes
  "freeze" equal "direct"; sweep entries equal single calls.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dtlens.analysis.circuits.edge_patching import edge_patching
from dtlens.analysis.circuits.nodes import (
    MLP,
    Embed,
    Head,
    Logits,
    parse_receivers,
    parse_sender,
    reaches,
)
from dtlens.analysis.circuits.path_patching import path_patching, path_patching_sweep
from dtlens.errors import BatchError, ConfigError, DTLensError
from tests.conftest import build_batch, build_model

NORMS = ["LN", "LNPre", None]
ATOL = 1e-5


def logit_diff(logits):
    """Logit of action 0 minus action 1 at the last token (one value per row)."""
    return logits[:, -1, 0] - logits[:, -1, 1]


def probe_metric(n_tokens: int, n_actions: int = 7):
    """A metric reading every logit with fixed random weights: equal values <=> equal logits."""
    weights = torch.randn(n_tokens, n_actions, generator=torch.Generator().manual_seed(7))
    return lambda logits: (logits * weights).sum((-1, -2))


def make_setup(normalization):
    model = build_model(normalization=normalization)
    clean, corrupt = build_batch(seed=0), build_batch(seed=1)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
        _, corrupt_cache = model.run_with_cache(corrupt)
    return model, clean, corrupt, clean_cache, corrupt_cache


@pytest.fixture(scope="module", params=NORMS, ids=["LN", "LNPre", "no-norm"])
def setup(request):
    """Every norm variant: for what path patching computes by hand (norms, q/k/v, writes)."""
    return make_setup(request.param)


@pytest.fixture(scope="module")
def setup_ln():
    """One model, for what only runs the model's own forward (freeze mode, sweep batching)."""
    return make_setup("LN")


def roles(setup, direction):
    _, clean, corrupt, clean_cache, corrupt_cache = setup
    if direction == "denoise":
        return corrupt, corrupt_cache, clean_cache
    return clean, clean_cache, corrupt_cache


def every_sender(model):
    cfg = model.cfg
    heads = [Head(layer, h) for layer in range(cfg.n_layers) for h in range(cfg.n_heads)]
    mlps = [MLP(layer) for layer in range(cfg.n_layers)]
    embeds = [Embed(name.split("_")[1]) for name in model.embedding_hook_names]
    return heads + mlps + embeds


def hand_norm(model, ln, x):
    d, eps = model.cfg.d_model, model.cfg.eps
    if model.cfg.normalization is None:
        return x
    if model.cfg.normalization == "LNPre":
        return F.layer_norm(x, (d,), eps=eps)
    return F.layer_norm(x, (d,), ln.weight, ln.bias, eps)


def hand_logits(model, final_resid):
    return hand_norm(model, model.core.ln_final, final_resid) @ model.W_U + model.b_U


def final_name(model):
    return f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"


# ------------------------------------------------------------------------ direct mode
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_direct_every_sender_into_logits_gives_the_source_logits(setup, direction):
    model, clean, corrupt, *_ = setup
    source = clean if direction == "denoise" else corrupt
    metric = probe_metric(clean.n_tokens(3))
    with torch.no_grad():
        expected = metric(model(source)).mean()
    raw = path_patching(
        model, clean, corrupt, every_sender(model), "logits", metric,
        direction=direction, normalize=False,
    )  # fmt: skip
    torch.testing.assert_close(raw, expected, atol=1e-4, rtol=1e-5)
    restored = path_patching(
        model, clean, corrupt, every_sender(model), Logits(), logit_diff, direction=direction
    )  # denoise: the clean run (restored 1); noise: the corrupt run (restored 0)
    expected_restored = 1.0 if direction == "denoise" else 0.0
    torch.testing.assert_close(restored, torch.tensor(expected_restored), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "model_kw, batch_kw",
    [
        ({"model_type": "clone"}, {}),
        ({}, {"final_action": True, "n_steps": 3}),
        ({"gated_mlp": True, "act_fn": "relu"}, {}),
        ({"time_embedding": "linear"}, {"n_steps": 3}),
    ],
    ids=["clone", "final-action", "gated", "linear-time"],
)
def test_direct_every_sender_decomposes_other_layouts(model_kw, batch_kw):
    model = build_model(**model_kw)
    clean, corrupt = build_batch(seed=0, **batch_kw), build_batch(seed=1, **batch_kw)
    if model.cfg.model_type == "clone":
        clean, corrupt = clean.replace(rtg=None), corrupt.replace(rtg=None)
    metric = probe_metric(clean.n_tokens(model.cfg.tokens_per_step))
    with torch.no_grad():
        expected = metric(model(clean)).mean()
    raw = path_patching(
        model, clean, corrupt, every_sender(model), "logits", metric, normalize=False
    )
    torch.testing.assert_close(raw, expected, atol=1e-4, rtol=1e-5)


def test_direct_every_sender_with_padding():
    model = build_model()
    clean = build_batch(seed=0, n_steps=2).left_pad(4, pad_action=7)
    corrupt = build_batch(seed=1, n_steps=2).left_pad(4, pad_action=7)
    metric = probe_metric(11)
    with torch.no_grad():
        expected = metric(model(corrupt)).mean()
    raw = path_patching(
        model, clean, corrupt, every_sender(model), "logits", metric,
        direction="noise", normalize=False,
    )  # fmt: skip
    torch.testing.assert_close(raw, expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_direct_one_sender_into_logits_matches_hand_computation(setup, direction):
    model, clean, corrupt, *_ = setup
    _, base_cache, src_cache = roles(setup, direction)
    final = base_cache[final_name(model)]
    z = "blocks.0.attn.hook_z"
    head_write = (src_cache[z][:, :, 2] - base_cache[z][:, :, 2]) @ model.core.W_O[0, 2]
    mlp_write = src_cache["blocks.1.hook_mlp_out"] - base_cache["blocks.1.hook_mlp_out"]
    state_write = torch.zeros_like(final)  # S tokens sit at 3t + 1; keep only S2 and S4
    state_diff = src_cache["hook_state_embed"] - base_cache["hook_state_embed"]
    state_write[:, [4, 10]] = state_diff[:, [1, 3]]
    cases = [(Head(0, 2), head_write), (MLP(1), mlp_write), ("state_embed@S2,-1", state_write)]
    for sender, write in cases:
        expected = logit_diff(hand_logits(model, final + write)).mean()
        raw = path_patching(
            model, clean, corrupt, sender, "logits", logit_diff,
            direction=direction, normalize=False,
        )  # fmt: skip
        torch.testing.assert_close(raw, expected.detach(), atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("kind", ["q", "k", "v"])
def test_direct_head_input_receiver_matches_hand_computation(setup, kind):
    model, clean, corrupt, *_ = setup
    base, base_cache, src_cache = roles(setup, "denoise")
    core = model.core
    z = "blocks.0.attn.hook_z"
    write = (src_cache[z][:, :, 1] - base_cache[z][:, :, 1]) @ core.W_O[0, 1]
    write = write + src_cache["blocks.0.hook_mlp_out"] - base_cache["blocks.0.hook_mlp_out"]
    x = hand_norm(model, core.blocks[1].ln1, base_cache["blocks.1.hook_resid_pre"] + write)
    W, b = getattr(core, f"W_{kind.upper()}")[1, 2], getattr(core, f"b_{kind.upper()}")[1, 2]
    value = (x @ W + b).detach()

    def set_head(act, hook):
        act = act.clone()
        act[:, :, 2] = value
        return act

    with torch.no_grad():
        logits = model.run_with_hooks(base, fwd_hooks=[(f"blocks.1.attn.hook_{kind}", set_head)])
    expected = logit_diff(logits).mean()
    raw = path_patching(
        model, clean, corrupt, ["L0H1", "MLP0"], f"L1H2.{kind}", logit_diff, normalize=False
    )
    torch.testing.assert_close(raw, expected, atol=ATOL, rtol=1e-5)


def test_direct_mlp_receiver_matches_hand_computation(setup):
    model, clean, corrupt, *_ = setup
    base, base_cache, src_cache = roles(setup, "noise")
    core = model.core
    z = "blocks.1.attn.hook_z"
    write = (src_cache[z][:, :, 3] - base_cache[z][:, :, 3]) @ core.W_O[1, 3]
    x = hand_norm(model, core.blocks[1].ln2, base_cache["blocks.1.hook_resid_mid"] + write)
    mlp_out = (F.gelu(x @ core.W_in[1] + core.b_in[1]) @ core.W_out[1] + core.b_out[1]).detach()
    with torch.no_grad():
        logits = model.run_with_hooks(
            base, fwd_hooks=[("blocks.1.hook_mlp_out", lambda act, hook: mlp_out)]
        )
    expected = logit_diff(logits).mean()
    raw = path_patching(
        model, clean, corrupt, "L1H3", "MLP1", logit_diff, direction="noise", normalize=False
    )
    torch.testing.assert_close(raw, expected, atol=ATOL, rtol=1e-5)


# ------------------------------------------------------------------------ freeze mode
def freeze_reference(model, clean, corrupt, senders, receivers, direction, freeze_mlps):
    """IOI path patching, one path, full forwards with plain run_with_hooks.

    ``senders``: ("head", layer, head) / ("mlp", layer); ``receivers``: ("q"|"k"|"v",
    layer, head) / ("mlp", layer) / ("logits",).
    """
    base, source = (corrupt, clean) if direction == "denoise" else (clean, corrupt)
    with torch.no_grad():
        _, base_cache = model.run_with_cache(base)
        _, src_cache = model.run_with_cache(source)
    hooks = []
    for layer in range(model.cfg.n_layers):
        z = f"blocks.{layer}.attn.hook_z"
        frozen = base_cache[z].clone()
        for s in senders:
            if s[0] == "head" and s[1] == layer:
                frozen[:, :, s[2]] = src_cache[z][:, :, s[2]]
        hooks.append((z, lambda act, hook, frozen=frozen: frozen))
        out = f"blocks.{layer}.hook_mlp_out"
        if ("mlp", layer) in senders:
            hooks.append((out, lambda act, hook, v=src_cache[out]: v))
        elif freeze_mlps:
            hooks.append((out, lambda act, hook, v=base_cache[out]: v))

    def where(r):
        if r[0] == "logits":
            return "ln_final.hook_in"
        if r[0] == "mlp":
            return f"blocks.{r[1]}.ln2.hook_in"  # the MLP's input only
        return f"blocks.{r[1]}.attn.hook_{r[0]}"

    stored = {}

    def capture(act, hook, r):
        stored[r] = act[:, :, r[2]].clone() if len(r) == 3 else act.clone()

    def patch(act, hook, r):
        if len(r) == 3:
            act = act.clone()
            act[:, :, r[2]] = stored[r]
            return act
        return stored[r]

    with torch.no_grad():
        model.run_with_hooks(
            base,
            fwd_hooks=hooks
            + [(where(r), lambda act, hook, r=r: capture(act, hook, r)) for r in receivers],
        )
        logits = model.run_with_hooks(
            base,
            fwd_hooks=[(where(r), lambda act, hook, r=r: patch(act, hook, r)) for r in receivers],
        )
    return logit_diff(logits).mean()


FREEZE_CASES = [
    ([("head", 0, 1)], [("q", 1, 2), ("v", 1, 0)], ["L0H1"], ["L1H2.q", "L1H0.v"]),
    ([("head", 0, 1), ("head", 1, 3)], [("logits",)], ["L0H1", "L1H3"], ["logits"]),
    ([("mlp", 0), ("head", 0, 2)], [("k", 1, 1)], ["MLP0", "L0H2"], ["L1H1.k"]),
    ([("head", 0, 3)], [("mlp", 1)], ["L0H3"], ["MLP1"]),
]


@pytest.mark.parametrize("freeze_mlps", [False, True])
@pytest.mark.parametrize("direction", ["denoise", "noise"])
@pytest.mark.parametrize("case", FREEZE_CASES, ids=["qv", "logits", "mlp-sender", "mlp-in"])
def test_freeze_matches_the_unbatched_three_step_reference(setup_ln, case, direction, freeze_mlps):
    model, clean, corrupt, *_ = setup_ln
    ref_senders, ref_receivers, senders, receivers = case
    expected = freeze_reference(
        model, clean, corrupt, ref_senders, ref_receivers, direction, freeze_mlps
    )
    raw = path_patching(
        model, clean, corrupt, senders, receivers, logit_diff, mode="freeze",
        direction=direction, freeze_mlps=freeze_mlps, normalize=False,
    )  # fmt: skip
    torch.testing.assert_close(raw, expected, atol=ATOL, rtol=1e-5)


def test_freeze_with_frozen_mlps_equals_direct(setup):
    model, clean, corrupt, *_ = setup
    for senders, receivers in [
        (["L0H1", "L1H2", "state_embed@S3"], "logits"),
        (["L0H0", "MLP0", "rtg_embed"], ["L1H1.q", "L1H2.k", "L1H3.v"]),
        (["L0H2@-1,S2"], ["MLP0", "MLP1"]),
    ]:
        direct = path_patching(model, clean, corrupt, senders, receivers, logit_diff)
        freeze = path_patching(
            model, clean, corrupt, senders, receivers, logit_diff, mode="freeze", freeze_mlps=True
        )
        torch.testing.assert_close(freeze, direct, atol=1e-4, rtol=1e-4)


def test_freeze_every_sender_into_logits_gives_the_source_logits(setup_ln):
    model, clean, corrupt, *_ = setup_ln
    metric = probe_metric(clean.n_tokens(3))
    with torch.no_grad():
        expected = metric(model(clean)).mean()
    raw = path_patching(
        model, clean, corrupt, every_sender(model), "logits", metric, mode="freeze",
        freeze_mlps=True, normalize=False,
    )  # fmt: skip
    torch.testing.assert_close(raw, expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("mode", ["direct", "freeze"])
@pytest.mark.parametrize("freeze_mlps", [False, True])
def test_hook_free_and_hooked_runs_agree(setup_ln, mode, freeze_mlps):
    """Without hooks on the model, steps 2 and 3 run plain modules (no attention at all in
    freeze step 2); with any hook attached they run the hooked model. Same numbers."""
    model, clean, corrupt, *_ = setup_ln
    kw = {"mode": mode, "freeze_mlps": freeze_mlps, "normalize": False, "show_progress": False}
    for receivers in [["L1H0.q", "L1H1.k", "L1H2.v"], "MLP1", "logits"]:
        plain = path_patching_sweep(model, clean, corrupt, receivers, logit_diff, **kw)
        with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda act, hook: act)]):
            hooked = path_patching_sweep(model, clean, corrupt, receivers, logit_diff, **kw)
        torch.testing.assert_close(
            plain.info["per_pair"], hooked.info["per_pair"], atol=ATOL, rtol=0
        )


# --------------------------------------------------------------- senders that do nothing
@pytest.mark.parametrize("mode", ["direct", "freeze"])
def test_sender_writing_nothing_gives_zero_and_the_base_metric(mode):
    model = build_model()
    with torch.no_grad():  # head 1 of layer 0 writes nothing: zero its W_O columns
        model.core.blocks[0].attn.o.weight[:, 8:16] = 0
    assert float(model.core.W_O[0, 1].detach().abs().max()) == 0.0
    clean, corrupt = build_batch(seed=0), build_batch(seed=1)
    with torch.no_grad():
        corrupt_metric = logit_diff(model(corrupt)).mean()
    kw = {"mode": mode, "freeze_mlps": True}
    for sender in ["L0H1", Head(0, 2, pos=()), MLP(0, pos=())]:
        for receivers in ["logits", ["L1H0.q", "L1H1.k"], "MLP1"]:
            raw = path_patching(
                model, clean, corrupt, sender, receivers, logit_diff, normalize=False, **kw
            )
            torch.testing.assert_close(raw, corrupt_metric, atol=1e-5, rtol=0)
    effect = path_patching(model, clean, corrupt, "L0H1", "logits", logit_diff, **kw)
    torch.testing.assert_close(effect, torch.tensor(0.0), atol=1e-5, rtol=0)


def test_a_sender_after_the_receiver_is_refused_and_adds_nothing_to_a_group(setup_ln):
    model, clean, corrupt, *_ = setup_ln
    for mode in ("direct", "freeze"):
        for sender, receiver in [("L1H0", "L1H2.q"), ("MLP0", "L0H1.k"), ("MLP1", "MLP1")]:
            with pytest.raises(ConfigError, match=r"can reach a receiver.*carries nothing"):
                path_patching(model, clean, corrupt, sender, receiver, logit_diff, mode=mode)
        # beside a sender that reaches the receiver, an unreachable one changes nothing
        both = path_patching(model, clean, corrupt, ["L0H1", "L1H0"], "L1H2.q", logit_diff,
                             mode=mode)  # fmt: skip
        alone = path_patching(model, clean, corrupt, "L0H1", "L1H2.q", logit_diff, mode=mode)
        assert float(both) == pytest.approx(float(alone), abs=1e-6)


# ------------------------------------------------------------------------------ sweep
@pytest.mark.parametrize("mode", ["direct", "freeze"])
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_sweep_entries_equal_single_calls(setup_ln, mode, direction):
    model, clean, corrupt, *_ = setup_ln
    cfg = model.cfg
    receiver_sets = ["logits", ["L1H0.q", "L1H3.k"]] + (["MLP0"] if mode == "direct" else [])
    for receivers in receiver_sets:
        kw = {"mode": mode, "direction": direction, "sender_pos": ["S4", 7]}
        result = path_patching_sweep(
            model, clean, corrupt, receivers, logit_diff, show_progress=False, **kw
        )
        one_head_per_chunk = path_patching_sweep(
            model, clean, corrupt, receivers, logit_diff, max_batch=1, **kw
        )
        assert result.values.shape == (cfg.n_layers, cfg.n_heads)
        torch.testing.assert_close(one_head_per_chunk.values, result.values, atol=1e-6, rtol=1e-5)
        targets = parse_receivers(receivers)
        for layer in range(cfg.n_layers):
            for head in range(cfg.n_heads):
                got = result.value(layer=str(layer), head=str(head))
                sender = Head(layer, head, ("S4", 7))
                if not any(reaches(sender, r) for r in targets):
                    assert got == (0.0 if direction == "denoise" else 1.0)  # nothing moves
                    continue
                single = path_patching(
                    model, clean, corrupt, sender, receivers, logit_diff,
                    mode=mode, direction=direction,
                )  # fmt: skip
                assert got == pytest.approx(float(single), abs=1e-5)


def test_sweep_result_is_labelled_and_heads_after_the_receiver_are_zero(setup_ln):
    model, clean, corrupt, *_ = setup_ln
    result = path_patching_sweep(model, clean, corrupt, "L1H2.v", logit_diff, show_progress=False)
    assert result.axes == ("layer", "head")
    assert result.labels == {"layer": ["0", "1"], "head": ["0", "1", "2", "3"]}
    assert torch.equal(result.values[1], torch.zeros(4))  # layer-1 heads cannot reach L1H2.v
    assert result.values[0].abs().sum() > 0
    assert result.info["receivers"] == ["L1H2.v"] and result.info["mode"] == "direct"
    assert result.info["per_pair"].shape == (2, 4, 2)
    torch.testing.assert_close(result.info["per_pair"].mean(-1), result.values)
    with torch.no_grad():
        clean_metric, corrupt_metric = logit_diff(model(clean)), logit_diff(model(corrupt))
    torch.testing.assert_close(result.info["clean_metric"], clean_metric, atol=1e-5, rtol=0)
    raw = path_patching_sweep(
        model, clean, corrupt, "L1H2.v", logit_diff, normalize=False, show_progress=False
    )
    torch.testing.assert_close(raw.values[1], corrupt_metric.mean().expand(4), atol=1e-6, rtol=0)
    noise = path_patching_sweep(
        model, clean, corrupt, "L1H2.v", logit_diff, direction="noise", show_progress=False
    )
    assert torch.equal(noise.values[1], torch.ones(4))  # restored fraction of the clean run


# ----------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "senders, receivers, match",
    [
        ("L2H0", "logits", "layer 2 is outside 0..1"),
        ("L0H4", "logits", "head 4 is outside 0..3"),
        ("L0H0", "L1H9.q", "head 9 is outside"),
        ("L0H0@S9", "logits", "'S9' is not a token label"),
        ("L0H0@11", "logits", "position 11 is outside -11..10"),
        ("L0H0", "L1H0.x", "cannot parse receiver 'L1H0.x'"),
        ("head0", "logits", "cannot parse sender 'head0'"),
        (["L0H0", "L0H0"], "logits", "listed more than once"),
        ([], "logits", "at least one sender"),
    ],
)
def test_bad_nodes_raise_config_errors_naming_the_value(setup_ln, senders, receivers, match):
    model, clean, corrupt, *_ = setup_ln
    with pytest.raises(ConfigError, match=match):
        path_patching(model, clean, corrupt, senders, receivers, logit_diff)


def test_bad_arguments_raise(setup_ln):
    model, clean, corrupt, *_ = setup_ln
    call = lambda **kw: path_patching(  # noqa: E731
        model, kw.pop("clean", clean), kw.pop("corrupt", corrupt), "L0H0", "logits",
        kw.pop("metric", logit_diff), **kw,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="mode must be 'direct' or 'freeze', got 'both'"):
        call(mode="both")
    with pytest.raises(ConfigError, match="direction must be 'denoise' or 'noise'"):
        call(direction="restore")
    with pytest.raises(DTLensError, match=r"shape \[B\] = \[2\], or to one scalar.*got \[2, 7\]"):
        call(metric=lambda logits: logits[:, -1])
    with pytest.raises(BatchError, match=r"same window: obs is \[2, 4, 7, 7, 20\] in one"):
        call(corrupt=build_batch(seed=1, n_steps=3))
    with pytest.raises(BatchError, match="same window: padding_mask is None in one"):
        call(corrupt=corrupt.replace(padding_mask=torch.ones(2, 4, dtype=torch.bool)))
    left_padded = torch.ones(2, 4, dtype=torch.bool)
    left_padded[0, 0] = False
    with pytest.raises(BatchError, match="same padding_mask"):  # same shape, other positions
        call(
            clean=clean.replace(padding_mask=torch.ones(2, 4, dtype=torch.bool)),
            corrupt=corrupt.replace(padding_mask=left_padded),
        )
    with pytest.raises(DTLensError, match="normalize=False"):  # clean == corrupt: no gap
        call(corrupt=clean)
    torch.testing.assert_close(  # ... but the raw metric is fine
        call(corrupt=clean, normalize=False), logit_diff(model(clean)).mean().detach()
    )
    with pytest.raises(ConfigError, match="normalize must be True or False"):
        call(normalize="yes")
    with pytest.raises(ConfigError, match="max_batch must be a positive int, got 0"):
        path_patching_sweep(model, clean, corrupt, "logits", logit_diff, max_batch=0)
    with pytest.raises(ConfigError, match="no RTG embedding"):
        clone = build_model(model_type="clone")
        b0, b1 = build_batch(seed=0).replace(rtg=None), build_batch(seed=1).replace(rtg=None)
        path_patching(clone, b0, b1, "rtg_embed", "logits", logit_diff)


def test_a_pair_with_an_rtg_in_only_one_run_is_refused():
    """The pair check covers the RTG field, not only obs and actions: a behaviour-cloning
    model accepts windows with or without RTG, but a pair mixing both has no common
    window; path patching, its sweep and edge patching name the field. (Timesteps cannot
    differ alone: a TrajectoryBatch ties their shape to obs.)"""
    model = build_model(model_type="clone")
    clean, corrupt = build_batch(seed=0).replace(rtg=None), build_batch(seed=1)
    model.validate(clean)  # each is fine on its own
    model.validate(corrupt)
    match = "same window: rtg is None in one and \\[2, 4\\] in the other"
    with pytest.raises(BatchError, match=match):
        path_patching(model, clean, corrupt, "L0H0", "logits", logit_diff)
    with pytest.raises(BatchError, match=match):
        path_patching_sweep(model, clean, corrupt, "logits", logit_diff, show_progress=False)
    with pytest.raises(BatchError, match=match):
        edge_patching(model, clean, corrupt, logit_diff, [])


@pytest.mark.parametrize("mode", ["direct", "freeze"])
def test_a_scalar_metric_is_the_scalar_of_each_sender_group(setup_ln, mode):
    """A ``.mean()`` metric gives the per-pair sweep's mean raw values, and its restored
    fraction is the ratio of the means (computed here from the per-pair sweep)."""
    model, clean, corrupt, *_ = setup_ln
    scalar = lambda logits: logit_diff(logits).mean()  # noqa: E731
    per_pair = path_patching_sweep(model, clean, corrupt, "logits", logit_diff, mode,
                                   normalize=False, show_progress=False)  # fmt: skip
    raw = path_patching_sweep(model, clean, corrupt, "logits", scalar, mode,
                              normalize=False, show_progress=False)  # fmt: skip
    torch.testing.assert_close(raw.values, per_pair.values, atol=1e-5, rtol=0)
    assert raw.info["per_pair"] is None
    restored = path_patching_sweep(model, clean, corrupt, "logits", scalar, mode,
                                   show_progress=False)  # fmt: skip
    c, k = (per_pair.info[n].mean() for n in ("clean_metric", "corrupt_metric"))
    torch.testing.assert_close(restored.values, (per_pair.values - k) / (c - k), atol=1e-4, rtol=0)
    one = path_patching(model, clean, corrupt, "L0H1", "logits", scalar, mode, normalize=False)
    torch.testing.assert_close(one, per_pair.values[0, 1], atol=1e-5, rtol=0)


# ------------------------------------------- MLP and embedding senders, resid_pre receivers
def resid_reference(model, clean, corrupt, senders, layer, direction):
    """Direct mode into ``resid_pre{layer}``, by hand: the base stream entering the block plus
    the senders' source-minus-base writes, run on from that block."""
    base, source = (corrupt, clean) if direction == "denoise" else (clean, corrupt)
    _, src = model.run_with_cache(source)
    _, own = model.run_with_cache(base)
    resid = own[f"blocks.{layer}.hook_resid_pre"].clone()
    for sender in senders:
        if sender.startswith("MLP"):
            name = f"blocks.{int(sender[3:])}.hook_mlp_out"
            resid += src[name] - own[name]
        elif sender.startswith("L"):
            lay, head = (int(x) for x in sender[1:].split("H"))
            name = f"blocks.{lay}.attn.hook_z"
            resid += (src[name][:, :, head] - own[name][:, :, head]) @ model.core.blocks[
                lay
            ].attn.W_O[head]
    return model.forward_from_layer(resid, layer, base)


@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_resid_pre_receiver_matches_a_hand_computation(setup_ln, direction):
    model, clean, corrupt, *_ = setup_ln
    senders = ["L0H1", "MLP0"]
    with torch.no_grad():
        expected = logit_diff(resid_reference(model, clean, corrupt, senders, 1, direction))
    for mode in ("direct", "freeze"):
        got = path_patching(model, clean, corrupt, senders, "resid_pre1", logit_diff, mode,
                            direction, freeze_mlps=True, normalize=False)  # fmt: skip
        torch.testing.assert_close(got, expected.mean(), atol=1e-5, rtol=0)
    # every sender before block 1 into its stream gives the source run's stream there
    every = ["L0H0", "L0H1", "L0H2", "L0H3", "MLP0", "rtg", "state", "action", "time"]
    full = path_patching(model, clean, corrupt, every, "blocks.1.hook_resid_pre", logit_diff,
                         direction=direction)  # fmt: skip
    assert float(full) == pytest.approx(1.0 if direction == "denoise" else 0.0, abs=1e-4)


@pytest.mark.parametrize("senders", ["mlps", "embeddings", "all"])
def test_sweeps_over_mlp_and_embedding_senders_equal_single_calls(setup_ln, senders):
    model, clean, corrupt, *_ = setup_ln
    for receivers in ("logits", "resid_pre1", ["L1H0.q", "MLP1"]):
        result = path_patching_sweep(model, clean, corrupt, receivers, logit_diff,
                                     senders=senders, show_progress=False)  # fmt: skip
        assert result.axes == ("sender",)
        expected = {
            "mlps": ["MLP0", "MLP1"],
            "embeddings": ["rtg_embed", "state_embed", "action_embed", "time_embed"],
        }.get(senders)
        if expected is not None:
            assert result.labels["sender"] == expected
        else:
            assert len(result.labels["sender"]) == 4 + 2 * 5
        targets = parse_receivers(receivers)
        for label in result.labels["sender"]:
            if not any(reaches(parse_sender(label), r) for r in targets):
                assert result.value(sender=label) == 0.0  # a path that carries nothing
                continue
            single = path_patching(model, clean, corrupt, label, receivers, logit_diff)
            assert result.value(sender=label) == pytest.approx(float(single), abs=1e-5)


def test_resid_pre_comes_alone_and_sweeps_name_their_senders(setup_ln):
    model, clean, corrupt, *_ = setup_ln
    with pytest.raises(ConfigError, match="must be the only receiver"):
        path_patching(model, clean, corrupt, "L0H1", ["resid_pre1", "logits"], logit_diff)
    with pytest.raises(ConfigError, match="senders must be 'heads', 'mlps'"):
        path_patching_sweep(model, clean, corrupt, "logits", logit_diff, senders="neurons")
    # layer-1 senders cannot reach the stream entering block 1: exactly no effect
    sweep = path_patching_sweep(model, clean, corrupt, "resid_pre1", logit_diff, senders="all",
                                show_progress=False)  # fmt: skip
    assert sweep.value(sender="MLP1") == 0.0 and sweep.value(sender="L1H2") == 0.0
