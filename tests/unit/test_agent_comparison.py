"""The DT against the agents it simulates: measures, state kinds, replay, result, plot, section.

Independent expectations: KL and agreement against hand computations on crafted
distributions; a "DT" that answers with the planner's own logits (looked up by the
window's content, so a wrong window fails too) gives KL 0 and agreement 1; state kinds
of hand-played episodes written out by hand; the section's numbers recomputed from the
public API with the measures written out here in numpy.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from dtlens.analysis.agent_comparison import (
    KINDS,
    STATE_KINDS,
    ComparedAgent,
    agent_logits,
    agent_probabilities,
    argmax_agreement,
    compare_agents,
    demonstrator_agents,
    dt_probabilities,
    kl_divergence,
    play_episodes,
    probabilities_from_logits,
    state_kinds,
    summarise_steps,
)
from dtlens.analysis.agent_comparison.episodes import single_threaded
from dtlens.data.agents.planner import BoltzmannPlanner
from dtlens.env import MEMORY_ENV_ID, encode_observation, make_env
from dtlens.errors import BatchError, ConfigError, EnvError
from dtlens.plotting.agent_comparison import plot_agent_comparison
from dtlens.report import SECTIONS, ReportConfig
from dtlens.report.sections import SECTION_MODULES
from dtlens.report.sections import agent_comparison as section
from dtlens.torch_context import torch_threads
from tests.conftest import build_model

pytestmark = pytest.mark.usefixtures("one_thread")
R, D, X = (STATE_KINDS.index(k) for k in ("routine", "decision", "off-routine"))  # X: off


@pytest.fixture(scope="module")
def planner():
    return BoltzmannPlanner(logit_scale=2.5)


@pytest.fixture(scope="module")
def episodes(planner):
    """Two layouts, greedy and sampled at temperature 1 and 5 (routine, decision, off)."""
    return play_episodes(planner, ["key/top-ball", "ball/top-ball"], ["greedy:1", "1:2", "5:1"])


# ----------------------------------------------------------------------- measures
def test_kl_matches_a_hand_computation():
    p = torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    q = torch.tensor([[0.25, 0.5, 0.25], [0.2, 0.3, 0.5], [0.5, 0.25, 0.25]])
    expected = [
        0.5 * math.log(0.5 / 0.25) + 0.25 * math.log(0.25 / 0.5) + 0.25 * math.log(1.0),
        0.0,  # identical distributions
        math.log(2.0),  # zero-probability actions of p add nothing
    ]
    assert kl_divergence(p, q).tolist() == pytest.approx(expected, abs=1e-12)
    # q = 0 where p > 0: infinite
    assert math.isinf(kl_divergence(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])).item())


def test_agreement_matches_a_hand_computation():
    p = torch.tensor([[0.1, 0.7, 0.2], [0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [0.6, 0.3, 0.1]])
    q = torch.tensor([[0.2, 0.5, 0.3], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1]])
    # same argmax; q's argmax is one of p's tied argmaxes; not; not
    assert argmax_agreement(p, q).tolist() == [True, True, False, False]
    assert argmax_agreement(p, p).all()  # identical argmaxes agree


def test_measures_refuse_mismatched_shapes():
    with pytest.raises(BatchError, match="same shape"):
        kl_divergence(torch.ones(2, 3) / 3, torch.ones(2, 4) / 4)


def test_summaries_by_kind_and_bootstrap_intervals():
    values = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.5])
    kinds = np.array([R, D, R, X, D, X])
    episode = np.array([0, 0, 1, 1, 2, 2])
    mean, ci, n_steps, n_episodes = summarise_steps(values, kinds, episode, n_boot=500)
    assert mean.tolist() == pytest.approx([1.0, 0.0, 0.75, 3.5 / 6])
    assert n_steps.tolist() == [2, 2, 2, 6] and n_episodes.tolist() == [2, 2, 2, 3]
    assert (ci[:, 0] <= mean + 1e-12).all() and (mean <= ci[:, 1] + 1e-12).all()
    assert ci[0].tolist() == [1.0, 1.0]  # every resample of the routine steps gives 1
    mean, ci, n_steps, _ = summarise_steps(values, kinds, episode, n_boot=0, where=episode < 1)
    assert n_steps.tolist() == [1, 1, 0, 2] and math.isnan(mean[2]) and np.isnan(ci).all()


def test_probabilities_from_logits_widen_and_validate():
    probs = probabilities_from_logits(torch.log(torch.tensor([[0.25, 0.75]])), n_actions=4)
    assert probs[0].tolist() == pytest.approx([0.25, 0.75, 0.0, 0.0])
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        probabilities_from_logits(torch.zeros(1, 7), temperature=0.0)
    with pytest.raises(ConfigError, match="more than 3"):
        probabilities_from_logits(torch.zeros(1, 7), n_actions=3)


# ------------------------------------------------------------------- state kinds
@pytest.mark.parametrize(
    ("layout", "actions", "expected"),
    [
        # the optimal route: routine, the decision square, routine after the right turn
        ("key/top-ball", [2, 2, 2, 2, 1, 2], [R, R, R, R, D, R]),
        ("ball/top-ball", [2, 2, 2, 2, 0, 2], [R, R, R, R, D, R]),
        # a deliberate wrong turn at the decision square, back to it, then the right turn
        ("key/top-ball", [2, 2, 2, 2, 0, 1, 1, 2], [R, R, R, R, D, X, D, X]),
        # a detour in the corridor: off-routine even back on the route's squares
        ("key/top-ball", [2, 0, 1, 2, 2, 2, 1, 2], [R, R, X, X, X, X, D, X]),
        # a wasted action (toggle) at the start
        ("key/top-key", [5, 2, 2, 2, 2, 0], [R, X, X, X, X, D]),
    ],
)
def test_state_kinds_of_hand_played_episodes(layout, actions, expected):
    assert state_kinds(layout, actions).tolist() == expected


def test_state_kinds_refuse_actions_after_the_end():
    with pytest.raises(EnvError, match="ended at step 5"):
        state_kinds("key/top-ball", [2, 2, 2, 2, 1, 2, 2])


def test_played_episodes_are_labelled_like_their_actions(episodes):
    demos = episodes.demos
    assert episodes.n_episodes == 8 and len(episodes.layouts) == len(episodes.sampling) == 8
    assert episodes.sampling[:2] == ("greedy", "greedy")
    assert set(episodes.kind_counts()) == set(STATE_KINDS)
    assert all(n > 0 for n in episodes.kind_counts().values())
    for i in range(episodes.n_episodes):
        part = demos.episode_slice(i)
        expected = state_kinds(episodes.layouts[i], demos.actions[part].tolist())
        assert episodes.kinds[part].tolist() == expected.tolist()
    # greedy episodes walk the optimal route: 6 steps, routine but for the decision square
    assert demos.episode_lengths[:2].tolist() == [6, 6]
    assert episodes.kinds[:6].tolist() == [R, R, R, R, D, R]


def test_playing_is_reproducible(planner, episodes):
    again = play_episodes(planner, ["key/top-ball", "ball/top-ball"], ["greedy:1", "1:2", "5:1"])
    assert np.array_equal(again.demos.actions, episodes.demos.actions)
    assert np.array_equal(again.demos.obs, episodes.demos.obs)


# ------------------------------------------------------------------------- replay
def test_replayed_planner_logits_are_the_ones_it_played_with(planner, episodes):
    logits = agent_logits(planner, episodes)
    greedy = slice(0, int(episodes.demos.episode_lengths[:2].sum()))
    assert logits[greedy].argmax(-1).tolist() == episodes.demos.actions[greedy].tolist()
    # the first step's logits, by hand from the env: steps to success after each action
    env = make_env(MEMORY_ENV_ID, max_steps=50, one_hot=False)
    obs, _ = env.reset(seed=0, options={"instruction": "key", "top": "ball"})
    own = BoltzmannPlanner([env], logit_scale=2.5)
    first, _ = own.act(torch.as_tensor(obs["image"])[None], own.initial_state(1))
    torch.testing.assert_close(logits[0], first[0])
    probs = agent_probabilities(planner, episodes, temperature=5.0)
    torch.testing.assert_close(probs, torch.softmax(logits.double() / 5.0, -1).float())


def test_replay_notices_episodes_it_cannot_reproduce(planner, episodes):
    obs = episodes.demos.obs.copy()
    assert not np.array_equal(obs[3], obs[2])
    obs[3] = obs[2]  # step 3 of the first episode shows the view of step 2
    demos = dataclasses.replace(episodes.demos, obs=obs)
    tampered = dataclasses.replace(episodes, demos=demos)
    with pytest.raises(EnvError, match="diverged at step 3"):
        agent_logits(planner, tampered)


# ------------------------------------------------------------- the DT's windows
class _PlannerDT:
    """A stand-in "DT" that answers every window with the planner's logits at its last
    step, looked up by the window's content (timesteps, one-hot views, actions)."""

    def __init__(self, model, episodes, logits):
        self.cfg, self.device, self.training = model.cfg, torch.device("cpu"), False
        self.context_padding, self._model = model.context_padding, model
        self.table: dict[bytes, torch.Tensor] = {}
        demos, window = episodes.demos, model.cfg.n_timesteps
        for j in range(demos.n_steps):
            first = max(demos.episode_starts[demos.episode_starts <= j].max(), j - window + 1)
            steps = np.arange(first, j + 1)
            key = self._key(
                demos.timesteps[steps],
                encode_observation(torch.from_numpy(demos.obs[steps])),
                demos.actions[steps[:-1]],
            )
            assert torch.equal(self.table.setdefault(key, logits[j]), logits[j]), "collision"

    @staticmethod
    def _key(timesteps, obs, actions) -> bytes:
        parts = (np.asarray(timesteps, np.int64), np.asarray(obs, np.float32), np.asarray(actions))
        return b"|".join(p.tobytes() for p in parts)

    def pad_context(self, batch):
        return self._model.pad_context(batch)

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def action_logits(self, batch):
        out = torch.zeros(batch.batch_size, batch.n_steps, self.cfg.n_actions)
        for b in range(batch.batch_size):
            real = torch.ones(batch.n_steps, dtype=torch.bool)
            if batch.padding_mask is not None:
                real = batch.padding_mask[b]
            else:  # token padding: padded steps have zero observations
                real = batch.obs[b].flatten(1).any(-1)
            actions = batch.actions[b][real[: batch.actions.shape[1]]]
            key = self._key(batch.timesteps[b][real], batch.obs[b][real], actions)
            out[b, -1] = self.table[key]
        return out


@pytest.mark.parametrize("padding", ["mask", "tokens"])
def test_a_dt_that_answers_with_the_planner_matches_it_exactly(planner, episodes, padding):
    # a 9-step window: the long temperature-5 episodes' windows are cut at the front (a
    # shorter one would lose the instruction, and the planner's logits with it)
    model = build_model(n_ctx=26)
    model.metadata["context_padding"] = padding
    fake = _PlannerDT(model, episodes, agent_logits(planner, episodes))
    result = compare_agents(fake, episodes, [ComparedAgent("planner", planner)], rtgs=(0.9, 0.0))
    assert np.abs(result.step_kl).max() < 1e-5
    assert result.step_agreement.all()
    assert np.nanmax(np.abs(result.kl)) < 1e-5 and (result.agreement == 1).all()


def test_dt_windows_are_the_models_own_history(episodes):
    """The probabilities at a step are the model's on that step's window, padded the
    model's way (built here with the documented recipe)."""
    model = build_model(n_ctx=11)
    probs = dt_probabilities(model, episodes, rtg=0.5)
    demos = episodes.demos
    j = int(demos.episode_starts[1]) + 2  # an early step of episode 1: a short window
    steps = np.arange(demos.episode_starts[1], j + 1)
    batch = dtlens_batch(demos, steps, 0.5).left_pad(4, pad_action=7)
    expected = model.action_logits(batch)[0, -1].softmax(-1)
    torch.testing.assert_close(probs[j], expected.detach())
    hindsight = dt_probabilities(model, episodes, rtg="return")
    assert not torch.equal(hindsight, probs)
    with pytest.raises(ConfigError, match="finite number"):
        dt_probabilities(model, episodes, rtg=float("nan"))


def dtlens_batch(demos, steps, rtg):
    from dtlens.model.batch import TrajectoryBatch

    return TrajectoryBatch(
        obs=encode_observation(torch.from_numpy(demos.obs[steps]))[None],
        actions=torch.from_numpy(demos.actions[steps[:-1]])[None],
        rtg=torch.full((1, len(steps)), rtg),
        timesteps=torch.from_numpy(demos.timesteps[steps])[None],
    )


# ------------------------------------------------------------------ result, plot
def test_compare_agents_checks_its_arguments(planner, episodes):
    model = build_model(n_ctx=11)
    agent = ComparedAgent("planner", planner)
    with pytest.raises(ConfigError, match="no agents"):
        compare_agents(model, episodes, [])
    with pytest.raises(ConfigError, match="unique"):
        compare_agents(model, episodes, [agent, agent])
    with pytest.raises(ConfigError, match="an RTG must be"):
        compare_agents(model, episodes, [agent], rtgs=("high",))
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        compare_agents(model, episodes, [ComparedAgent("greedy", planner, 0.0)])


def test_plot_has_one_bar_per_agent_and_rtg_in_each_panel():
    kl = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    agree = np.full((2, 3, 4), 0.5)
    agree[0, 0, 1] = np.nan  # no steps: no bar
    ci = np.stack([kl - 1, kl + 2], -1)
    fig = plot_agent_comparison(
        kl, agree, agents=["a", "b"], rtgs=["RTG 0.9", "RTG 0", "RTG = return"],
        kinds=list(KINDS), kl_ci=ci,
    )  # fmt: skip
    assert len(fig.data) == 12
    assert [t.name for t in fig.data[:3]] == ["a, RTG 0.9", "a, RTG 0", "a, RTG = return"]
    assert list(fig.data[0].y) == kl[0, 0].tolist() and list(fig.data[0].x) == list(KINDS)
    assert list(fig.data[0].error_y.array) == [2.0] * 4
    assert list(fig.data[0].error_y.arrayminus) == [1.0] * 4
    assert fig.data[6].y[1] is None  # agreement of a kind without steps: no bar
    assert sum(t.showlegend is not False for t in fig.data) == 6
    with pytest.raises(BatchError, match="agreement has shape"):
        plot_agent_comparison(kl, agree[:1], agents=["a", "b"], rtgs=["x"] * 3, kinds=KINDS)


# ------------------------------------------------------------------------ section
def test_section_is_registered_in_both_lists():
    assert "agent_comparison" in SECTIONS
    assert SECTION_MODULES["agent_comparison"] is section


def test_section_numbers_recomputed_from_the_public_api(monkeypatch):
    monkeypatch.setattr(section, "original_lstm_path", lambda: None)  # the planner only
    model = build_model(n_ctx=26)
    config = ReportConfig()
    result = section.run(model, config)
    numbers = result.to_json()["numbers"]
    assert result.key == "agent_comparison" and len(result.figures) == 1
    assert numbers["agents"] == ["planner T=1", "planner T=5"]
    assert numbers["rtgs"] == ["RTG 0.9", "RTG 0", "RTG = return"]

    agents = demonstrator_agents(model)
    planner = agents[0].agent
    episodes = play_episodes(planner, seed=config.seed)
    assert numbers["episodes"]["n"] == episodes.n_episodes == 36
    kinds = episodes.kinds
    assert numbers["n_steps"] == {
        **{k: int((kinds == i).sum()) for i, k in enumerate(STATE_KINDS)},
        "all": episodes.n_steps,
    }
    for agent in agents:
        p = agent_probabilities(planner, episodes, agent.temperature).double().numpy()
        for rtg, label in ((0.9, "RTG 0.9"), (0.0, "RTG 0"), ("return", "RTG = return")):
            q = dt_probabilities(model, episodes, rtg).double().numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                kl = np.where(p > 0, p * np.log(p / q), 0.0).sum(-1)
            agree = np.array([p[i, q[i].argmax()] >= p[i].max() - 1e-6 for i in range(len(p))])
            for i, kind in enumerate(KINDS):
                mask = kinds == i if kind != "all" else np.ones_like(kinds, dtype=bool)
                got_kl = numbers["kl"][agent.name][label][kind]
                got_agree = numbers["agreement"][agent.name][label][kind]
                assert got_kl == pytest.approx(kl[mask].mean(), abs=2e-4)
                assert got_agree == pytest.approx(agree[mask].mean(), abs=2e-4)
                lo, hi = numbers["agreement_ci"][agent.name][label][kind]
                assert lo - 1e-4 <= got_agree <= hi + 1e-4
    in_context = numbers["decision_in_context"]
    window = episodes.demos.timesteps < model.cfg.n_timesteps
    assert in_context["n_steps"] == int((window & (kinds == D)).sum())
    assert "planner" in result.this_model


def test_original_lstm_path_follows_the_environment_variable(tmp_path, monkeypatch):
    fake = tmp_path / "agent.pt"
    fake.write_bytes(b"")
    monkeypatch.setenv(section.LSTM_ENV_VAR, str(fake))
    assert section.original_lstm_path() == fake


def test_result_summary_restricts_to_steps(planner, episodes):
    model = build_model(n_ctx=11)
    result = compare_agents(model, episodes, [ComparedAgent("p", planner)], rtgs=(0.9,))
    full = result.summary()
    assert full["agreement"]["p"]["RTG 0.9"]["all"] == round(float(result.agreement[0, 0, 3]), 4)
    first = result.summary(where=episodes.episode_of_step == 0)
    assert first["n_steps"] == {"routine": 5, "decision": 1, "off-routine": 0, "all": 6}
    assert first["kl"]["p"]["RTG 0.9"]["off-routine"] is None
    fig = result.plot()
    assert [t.name for t in fig.data] == ["p, RTG 0.9", "p, RTG 0.9"]


def test_a_recurrent_agent_carries_its_state_along_each_episode(episodes):
    """The lockstep replay gives each step the logits of the agent run on that episode
    alone, one observation after another from its initial state."""
    from dtlens.data.agents import LSTMAgent, LSTMAgentConfig

    agent = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=8, seed=0)).eval()
    replayed = agent_logits(agent, episodes)
    demos = episodes.demos
    for i in (0, 3, episodes.n_episodes - 1):
        state = agent.initial_state(1)
        for j in range(*demos.episode_slice(i).indices(demos.n_steps)):
            with torch.no_grad():
                logits, state = agent.act(torch.from_numpy(demos.obs[j])[None], state)
            torch.testing.assert_close(replayed[j], logits[0], atol=1e-5, rtol=1e-5)


def test_single_threaded_is_torch_threads_one_and_restores_on_error():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="inside"), single_threaded():
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
        with torch_threads(None):  # None: unchanged
            assert torch.get_num_threads() == 2
        for bad in (0, -1, True, 1.5):
            with pytest.raises(ConfigError, match="positive int or None"):
                torch_threads(bad)
    finally:
        torch.set_num_threads(before)
