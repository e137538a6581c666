"""DDPG (rl_runner/agents/ddpg.py) against brute force: targets, action bounds, one hand-written update, OU noise,
compiled losses, determinism, normalised networks, a resume with more envs, and learning Pendulum."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rl_runner.agents.ddpg import OrnsteinUhlenbeckNoise
from rl_runner.checkpoint import latest_checkpoint, load_into, load_state
from rl_runner.config import compose_config
from rl_runner.logging import read_scalars
from rl_runner.training import train
from tests.conftest import make_agent


def test_targets_are_identical_copies_built_from_the_same_configuration(tiny_config) -> None:
    cfg = tiny_config("env=halfcheetah", "net.norm=layer", "agent.critic_net.hidden=48")
    agent = make_agent(cfg)
    for online, target in ((agent.actor, agent.target_actor), (agent.critic, agent.target_critic)):
        assert repr(online) == repr(target)
        for (name, p), (target_name, t) in zip(online.state_dict().items(), target.state_dict().items()):
            assert name == target_name and torch.equal(p, t)
        assert not any(p.requires_grad for p in target.parameters())
    assert agent.critic.body[0].out_features == 48 and agent.actor.body[0].out_features == 32


def test_actor_respects_the_env_action_bounds(tiny_config) -> None:
    agent = make_agent(tiny_config("env=pendulum"))  # Pendulum torques are in [-2, 2]
    obs = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32) * 100
    for explore in (False, True):
        actions = agent.act(obs, explore=explore)
        assert actions.shape == (64, 1) and actions.dtype == np.float32
        assert np.all(np.abs(actions) <= 2.0)


def test_update_matches_a_hand_written_ddpg_step(tiny_config) -> None:
    """One update against the textbook equations computed separately on copies of the networks."""
    cfg = tiny_config("env=pendulum", "agent.tau=0.1")
    torch.manual_seed(0)
    agent = make_agent(cfg)
    rng = np.random.default_rng(0)
    for _ in range(40):  # a mix of terminal, time-limit (must still bootstrap) and ordinary transitions
        kind = rng.integers(3)
        agent.replay.add(
            rng.normal(size=(1, 3)),
            rng.uniform(-2, 2, (1, 1)),
            rng.normal(size=1),
            rng.normal(size=(1, 3)),
            np.array([kind == 1]),
            np.array([kind == 2]),
        )
    actor, critic = copy.deepcopy(agent.actor), copy.deepcopy(agent.critic)
    target_actor, target_critic = copy.deepcopy(agent.target_actor), copy.deepcopy(agent.target_critic)
    torch.manual_seed(1)
    metrics = agent.update()

    torch.manual_seed(1)
    batch = agent.replay.sample(agent.batch_size)
    assert batch.terminated.sum() > 0 and batch.truncated.sum() > 0
    y = batch.rewards + 0.99 * (1 - batch.terminated) * target_critic(batch.next_obs, target_actor(batch.next_obs))
    critic_loss = F.mse_loss(critic(batch.obs, batch.actions), y.detach())
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=cfg.agent.beta)
    critic_optimizer.zero_grad()
    critic_loss.backward()
    critic_optimizer.step()
    actor_loss = -critic(batch.obs, actor(batch.obs)).mean()
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=cfg.agent.alpha)
    actor_optimizer.zero_grad()
    actor_loss.backward()
    actor_optimizer.step()

    torch.testing.assert_close(metrics["loss/critic"], critic_loss.detach())
    torch.testing.assert_close(metrics["loss/actor"], actor_loss.detach())
    for mine, reference in ((agent.actor, actor), (agent.critic, critic)):
        for p, q in zip(mine.parameters(), reference.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    for mine, online, old_target in (
        (agent.target_actor, actor, target_actor),
        (agent.target_critic, critic, target_critic),
    ):
        for p, o, t in zip(mine.parameters(), online.parameters(), old_target.parameters()):
            torch.testing.assert_close(p, 0.9 * t + 0.1 * o, rtol=1e-5, atol=1e-6)


def test_ou_noise_has_the_documented_std_from_the_first_step_and_resets_per_env() -> None:
    """``noise_scale`` is the std of the noise for OU as for Gaussian noise: at the first step of an episode
    (the old process started at 0 and reached it only after hundreds of steps) and later on."""
    torch.manual_seed(0)
    sigma = torch.tensor([0.5, 2.0])
    noise = OrnsteinUhlenbeckNoise(sigma, theta=0.15, num_envs=20000)
    first = noise.sample(20000)
    torch.testing.assert_close(first.std(dim=0), sigma, rtol=0.03, atol=0)
    for _ in range(300):
        later = noise.sample(20000)
    torch.testing.assert_close(later.std(dim=0), sigma, rtol=0.03, atol=0)
    single = OrnsteinUhlenbeckNoise(torch.ones(1), theta=0.15, num_envs=3)
    samples = torch.stack([single.sample(3).clone() for _ in range(2000)])  # [T, N, A]
    x = samples[:, 0, 0]
    assert torch.corrcoef(torch.stack([x[:-1], x[1:]]))[0, 1] > 0.95  # white Gaussian noise would be near 0
    before = single.state.clone()
    single.reset(np.array([True, False, False]))
    assert not torch.equal(single.state[0], before[0]) and torch.equal(single.state[1:], before[1:])


@pytest.mark.slow
def test_compiled_losses_match_eager(tiny_config) -> None:
    eager, compiled = (
        make_agent(tiny_config("env=pendulum")),
        make_agent(tiny_config("env=pendulum", "agent.compile=true")),
    )
    compiled.actor.load_state_dict(eager.actor.state_dict())
    compiled.critic.load_state_dict(eager.critic.state_dict())
    compiled.target_actor.load_state_dict(eager.target_actor.state_dict())
    compiled.target_critic.load_state_dict(eager.target_critic.state_dict())
    rng = np.random.default_rng(0)
    for agent in (eager, compiled):
        for _ in range(64):
            agent.replay.add(
                rng.normal(size=(1, 3)),
                rng.uniform(-2, 2, (1, 1)),
                rng.normal(size=1),
                rng.normal(size=(1, 3)),
                np.zeros(1, dtype=bool),
                np.zeros(1, dtype=bool),
            )
        rng = np.random.default_rng(0)
    for step in range(3):
        torch.manual_seed(step)
        expected = eager.update()
        torch.manual_seed(step)
        got = compiled.update()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)


def test_same_seed_gives_identical_losses(tiny_config, tmp_path: Path) -> None:
    cfg = tiny_config("env=halfcheetah", "total_steps=400", "eval.every=0", "checkpoint.every=0")
    train(cfg, run_dir=tmp_path / "a")
    train(cfg, run_dir=tmp_path / "b")
    first, second = read_scalars(tmp_path / "a" / "tb"), read_scalars(tmp_path / "b" / "tb")
    for tag in ("loss/critic", "loss/actor", "q/mean", "train/episode_return"):
        if tag in first:
            assert first[tag] == second[tag]
    assert len(first["loss/critic"]) >= 5
    other = train(
        tiny_config("env=halfcheetah", "total_steps=400", "eval.every=0", "checkpoint.every=0", "seed=1"),
        run_dir=tmp_path / "c",
    )
    assert read_scalars(tmp_path / "c" / "tb")["loss/critic"] != first["loss/critic"]
    assert other["step"] == 400


@pytest.mark.slow
def test_ddpg_learns_pendulum(tmp_path: Path) -> None:
    """Random policies score about -1200 on Pendulum-v1; a learned swing-up scores above -400."""
    cfg = compose_config(
        ["experiment=ddpg_pendulum", "device=cpu", "progress=false", "eval.every=0", "checkpoint.every=0"]
    )
    summary = train(cfg, run_dir=tmp_path)
    assert summary["step"] == 10000
    assert summary["eval/return_mean"] > -400, summary


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_normalised_networks_train_and_act_on_single_observations(tiny_config, tmp_path: Path, norm: str) -> None:
    cfg = tiny_config("env=pendulum", f"net.norm={norm}", "net.init=he", "total_steps=250", "checkpoint.every=0")
    summary = train(cfg, run_dir=tmp_path)  # BatchNorm in training mode would reject a batch of one observation
    assert summary["updates"] == 151 and np.isfinite(summary["eval/return_mean"])
    trained = make_agent(cfg)
    load_into(latest_checkpoint(tmp_path / "checkpoints"), trained.state_groups(), map_location="cpu")
    norm_type = torch.nn.LayerNorm if norm == "layer" else torch.nn.BatchNorm1d
    for online, target in ((trained.critic, trained.target_critic), (trained.actor, trained.target_actor)):
        online_norms = [m for m in online.modules() if isinstance(m, norm_type)]
        target_norms = [m for m in target.modules() if isinstance(m, norm_type)]
        assert len(online_norms) == len(target_norms) == 2
        # trained: the norm layers' scales moved away from their initial ones, and the targets follow them
        assert any(not torch.equal(m.weight, torch.ones_like(m.weight)) for m in online_norms)
        assert any(not torch.equal(m.weight, torch.ones_like(m.weight)) for m in target_norms)


def test_normalised_networks_keep_their_statistics_through_training(tiny_config, tmp_path: Path) -> None:
    from rl_runner.checkpoint import load_into
    from tests.conftest import make_agent

    cfg = tiny_config("env=pendulum", "net.norm=batch", "total_steps=250", "checkpoint.every=0", "eval.every=0")
    train(cfg, run_dir=tmp_path)
    agent = make_agent(cfg)
    load_into(latest_checkpoint(tmp_path / "checkpoints"), agent.state_groups(), map_location="cpu")
    norms = [m for m in agent.critic.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    # the critic runs in training mode twice per update (its own loss, the actor's loss): 151 updates
    assert len(norms) == 2 and all(int(m.num_batches_tracked) == 2 * 151 for m in norms)
    assert all(float(m.running_mean.abs().sum()) > 0 for m in norms)
    linears = [layer for layer in agent.critic.body if isinstance(layer, torch.nn.Linear)]
    assert [layer.bias is None for layer in linears] == [True, True, False]  # no bias before a BatchNorm


def test_a_resume_with_more_envs_and_ou_noise_starts_new_episodes(tiny_config, tmp_path: Path) -> None:
    train(tiny_config("env=pendulum", "agent.noise=ou", "total_steps=150", "eval.every=0"), run_dir=tmp_path)
    more = tiny_config("env=pendulum", "agent.noise=ou", "env.num_envs=4", "total_steps=310", f"resume={tmp_path}")
    assert train(more, run_dir=tmp_path)["step"] == 310
    assert load_state(latest_checkpoint(tmp_path / "checkpoints"), "exploration_noise")["state"].shape == (4, 1)
