"""DRQN (rl_runner/agents/drqn.py): it solves a T-maze that a memoryless net cannot, runs from the command line
with success rates, refuses configurations that cannot work, and its loss (against a per-row, per-step
loop) and acting states around updates, resets and evaluation behave exactly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

from rl_runner.agents.base import Transition
from rl_runner.agents.drqn import DRQN
from rl_runner.buffers.episodes import SequenceBatch
from rl_runner.choices import Norm, RecurrentCell
from rl_runner.config import ConfigError, compose_config, validate_overrides
from rl_runner.envs.make import make_env
from rl_runner.logging import read_scalars
from rl_runner.training import train
from tests.agents.helpers import CELLS, NET, make_drqn
from tests.buffers.helpers import OBS, WINDOWS, Feeder, check_batch, random_plan
from tests.conftest import make_agent, run_cli, run_eval

SHORT_TMAZE = [
    "agent=drqn",
    "env=tmaze",
    "env.kwargs.length=3",
    "net.hidden=16",
    "agent.rnn_hidden=16",
    "agent.batch_size=8",
    "agent.learning_starts=100",
    "agent.buffer_size=2000",
    "agent.updates_per_step=0.5",
    "agent.target_update=20",
]


@pytest.mark.slow
@pytest.mark.parametrize(("cell", "reaches"), [("lstm", True), ("none", False)])
def test_memory_solves_the_tmaze_where_a_memoryless_net_cannot(
    tmp_path: Path, one_thread, cell: str, reaches: bool
) -> None:
    """The cue is shown only at the first step of a 5-cell corridor whose cells all look alike. With an LSTM,
    seed 0 succeeds in every one of 200 evaluation episodes after 5000 steps (seeds 0-5 all did, checked with
    these settings; scripts/bench_drqn.py measures more). A feed-forward core of the same width sees the same
    observation at the junction whichever side the goal is on, so it can do no better than guess: 50%."""
    cfg = compose_config(
        [
            "agent=drqn",
            "env=tmaze",
            "env.kwargs.length=5",
            f"agent.cell={cell}",
            "seed=0",
            "device=cpu",
            "progress=false",
            "total_steps=5000",
            "net.hidden=32",
            "agent.rnn_hidden=32",
            "agent.learning_starts=500",
            "agent.updates_per_step=0.5",
            "agent.target_update=100",
            "eval.every=0",
            "eval.episodes=200",
            "checkpoint.every=0",
        ]
    )
    summary = train(cfg, run_dir=tmp_path)
    if reaches:
        assert summary["eval/success_rate"] >= 0.9, summary
    else:
        assert summary["eval/success_rate"] <= 0.65, summary


def test_cli_trains_and_rl_eval_reports_the_success_rate(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = [*SHORT_TMAZE, "total_steps=300", "eval.every=150", "eval.episodes=4", "checkpoint.every=150"]
    overrides.append("env.num_envs=2")  # rl-eval plays one env with the checkpoint of two acting states
    result = run_cli(*overrides, "device=cpu", "progress=false", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    scalars = read_scalars(run_dir / "tb")
    assert "eval/success_rate" in scalars
    assert len(scalars["train/episode_success"]) == len(scalars["train/episode_return"])  # one per episode
    assert {value for _, value in scalars["train/episode_success"]} <= {0.0, 1.0}
    evaluated = run_eval(str(run_dir), "episodes=6", "video=true")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "success rate" in evaluated.stdout
    assert (run_dir / "videos" / "step_000000000300.mp4").stat().st_size > 0
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished"


def test_partially_observed_cartpole_with_burn_in_windows(tiny_config, tmp_path: Path) -> None:
    """The R2D2 path end to end: stored states, burn-in, windows, on CartPole without its velocities."""
    windows = ["agent.replay=windows", "agent.sequence_length=8", "agent.burn_in=4", "agent.stored_state=true"]
    cfg = tiny_config("experiment=drqn_cartpole_pomdp", "total_steps=300", *windows)
    assert cfg.env.wrappers.observation_subset.indices == [0, 2]
    summary = train(cfg, run_dir=tmp_path)
    scalars = read_scalars(tmp_path / "tb")
    assert summary["updates"] > 0 and "loss/q" in scalars
    assert all(torch.isfinite(torch.tensor(v)) for _, v in scalars["loss/q"])
    assert "eval/success_rate" not in scalars  # CartPole does not report success


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["agent.burn_in=5"], "agent.burn_in and agent.stored_state apply to agent.replay=windows"),
        (["agent.cell=transformer"], "agent.cell"),
        (["env=pendulum"], "discrete"),
    ],
)
def test_bad_configs_are_one_line_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate_overrides(["agent=drqn", "env=tmaze", *overrides])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_buffer_too_small_for_the_sequences_is_refused(tiny_config, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="agent.buffer_size=100 holds 100 steps per env"):
        train(tiny_config(*SHORT_TMAZE, "agent.buffer_size=100", "agent.sequence_length=80"), run_dir=tmp_path)


def hand_batch(
    lengths: list[int], burn: list[int], state_size: int, num_actions: int = 3, seed: int = 0
) -> SequenceBatch:
    """A batch as the replay makes it: windows padded at the end by repeating the last real step, burn-ins
    padded at the end, consistent obs/next_obs, a terminal step at the end of row 0."""
    gen = torch.Generator().manual_seed(seed)
    rows, width, k = len(lengths), max(lengths), max(burn)
    chain = torch.randn(rows, width + 1, OBS, generator=gen)
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).float()
    actions = torch.randint(num_actions, (rows, width), generator=gen).float()
    rewards = 2 * torch.randn(rows, width, generator=gen)
    terminated = torch.zeros(rows, width)
    terminated[0, lengths[0] - 1] = 1.0
    obs, next_obs = chain[:, :-1].clone(), chain[:, 1:].clone()
    burn_obs = torch.randn(rows, k, OBS, generator=gen)
    for b, n in enumerate(lengths):
        for field in (obs, next_obs, actions, rewards, terminated):
            field[b, n:] = field[b, n - 1]
        burn_obs[b, burn[b] :] = burn_obs[b, burn[b] - 1] if burn[b] else 0.0
    start = 0.5 * torch.randn(rows, state_size, generator=gen) if state_size else None
    return SequenceBatch(obs, actions, rewards, next_obs, terminated, mask, burn_obs, torch.tensor(burn), start)


def reference_loss(agent: DRQN, batch: SequenceBatch) -> torch.Tensor:
    """The masked mean Huber TD loss, one row and one real step at a time: burn-in without gradients from
    the start state (or zero), then the online net along obs_0, next_obs_0, ..., double-Q (or plain) targets
    from the target net run along the same inputs from the same start."""
    state_size = agent.online.state_size
    terms = []
    for b in range(batch.obs.shape[0]):
        start = batch.start_state[b : b + 1] if batch.start_state is not None else torch.zeros(1, state_size)
        online_state, target_state = start, start
        with torch.no_grad():
            for k in range(int(batch.burn_in_lengths[b])):
                x = batch.burn_in_obs[b, k].view(1, 1, -1)
                _, online_state = agent.online(x, online_state)
                _, target_state = agent.target(x, target_state)
        x = batch.obs[b, 0].view(1, 1, -1)
        q, online_state = agent.online(x, online_state)
        with torch.no_grad():
            _, target_state = agent.target(x, target_state)
        for t in range(int(batch.mask[b].sum())):
            x = batch.next_obs[b, t].view(1, 1, -1)
            q_next, online_state = agent.online(x, online_state)
            with torch.no_grad():
                q_target_next, target_state = agent.target(x, target_state)
                best = int((q_next if agent.double else q_target_next)[0, 0].argmax())
                y = batch.rewards[b, t] + agent.gamma * (1 - batch.terminated[b, t]) * q_target_next[0, 0, best]
            error = q[0, 0, int(batch.actions[b, t])] - y
            terms.append(0.5 * error**2 if error.abs() < 1 else error.abs() - 0.5)
            q = q_next
    return torch.stack(terms).mean()


def loss_and_grads(agent: DRQN, batch: SequenceBatch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    loss, _ = agent._losses(batch)
    return loss.detach(), [g.clone() for g in torch.autograd.grad(loss, agent.params)]


def assert_same_loss(a: tuple, b: tuple) -> None:
    torch.testing.assert_close(a[0], b[0], rtol=1e-6, atol=1e-7)
    for ga, gb in zip(a[1], b[1]):
        torch.testing.assert_close(ga, gb, rtol=1e-6, atol=1e-7)


def differs(a: tuple, b: tuple) -> bool:
    return not torch.allclose(a[0], b[0]) and any(not torch.allclose(ga, gb) for ga, gb in zip(a[1], b[1]))


def perturb_target(agent: DRQN, seed: int = 1) -> None:
    """Move the target net away from the online one, so that a mix-up between them shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in agent.target.parameters():
            p.add_(0.6 * torch.randn(p.shape, generator=gen))


LOSS_CASES = [
    pytest.param(RecurrentCell.lstm, True, False, True, id="lstm-double-stored-state"),
    pytest.param(RecurrentCell.lstm, False, False, False, id="lstm-plain"),
    pytest.param(RecurrentCell.gru, True, True, False, id="gru-double-dueling"),
    pytest.param(RecurrentCell.none, True, False, False, id="none-double"),
]


@pytest.mark.parametrize("cell, double, dueling, stored", LOSS_CASES)
def test_loss_and_gradients_match_a_per_step_reference(
    cell: RecurrentCell, double: bool, dueling: bool, stored: bool
) -> None:
    """_losses on a hand-made batch (rows of 4, 2, 1 real steps; burn-ins of 2, 1, 0; a terminal step) equals
    the loop reference in value and in every parameter's gradient: burn-in without gradient, masked mean over
    real steps only, (double) Q targets from the target net."""
    agent = make_drqn(cell=cell, double=double, dueling=dueling, replay=WINDOWS, burn_in=2, stored_state=stored)
    perturb_target(agent)
    batch = hand_batch([4, 2, 1], [2, 1, 0], agent.online.state_size if stored else 0)
    loss, grads = loss_and_grads(agent, batch)
    expected = reference_loss(agent, batch)
    expected_grads = torch.autograd.grad(expected, agent.params)
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_padded_and_burn_in_padding_steps_carry_no_loss_while_real_steps_do() -> None:
    """Wild rewards, actions, terminations and observations on padded window steps, or wild observations on
    padded burn-in steps, leave the loss and every gradient unchanged; changing a real window step's reward
    or action, or a real burn-in observation, changes them."""
    agent = make_drqn(replay=WINDOWS, burn_in=3)
    perturb_target(agent)
    lengths, burn = [4, 2, 1], [3, 1, 0]
    batch = hand_batch(lengths, burn, 0)
    base = loss_and_grads(agent, batch)
    gen = torch.Generator().manual_seed(7)

    wild = {name: value.clone() for name, value in batch._asdict().items() if value is not None}
    for b, n in enumerate(lengths):
        wild["rewards"][b, n:] = 1e6
        wild["actions"][b, n:] = (wild["actions"][b, n:] + 1) % 3
        wild["terminated"][b, n:] = 1 - wild["terminated"][b, n:]
        wild["obs"][b, n:] = 1e3 * torch.randn(4 - n, OBS, generator=gen)
        wild["next_obs"][b, n:] = 1e3 * torch.randn(4 - n, OBS, generator=gen)
        wild["burn_in_obs"][b, burn[b] :] = 1e3 * torch.randn(3 - burn[b], OBS, generator=gen)
    assert_same_loss(loss_and_grads(agent, batch._replace(**wild)), base)

    for name, row, step, value in (("rewards", 1, 1, 5.0), ("actions", 0, 2, None), ("burn_in_obs", 0, 0, 3.0)):
        changed = getattr(batch, name).clone()
        changed[row, step] = (changed[row, step] + 1) % 3 if value is None else changed[row, step] + value
        assert differs(loss_and_grads(agent, batch._replace(**{name: changed})), base), name


def test_rewards_and_actions_of_stored_burn_in_steps_do_not_reach_the_loss() -> None:
    """Through the agent's own windows replay: overwriting the stored rewards and actions of steps that serve
    only as burn-in in a batch leaves its loss and gradients unchanged; a window step's reward changes them."""
    agent = make_drqn(replay=WINDOWS, burn_in=3, sequence_length=2, buffer_size=200, num_envs=2)
    region = 100
    feeder = Feeder(agent.replay, WINDOWS, region, 2, 3, random_plan(12, max_length=10))
    for _ in range(60):
        feeder.add()
    rng_state = agent.replay.rng.bit_generator.state
    batch = agent.replay.sample(8)
    check_batch(batch, feeder)
    base = loss_and_grads(agent, batch)
    burn_steps, window_steps = set(), set()
    for b in range(8):
        env, g0, k, n = (
            int(batch.obs[b, 0, 0]),
            int(batch.obs[b, 0, 3]),
            int(batch.burn_in_lengths[b]),
            int(batch.mask[b].sum()),
        )
        burn_steps |= {(env, g) for g in range(g0 - k, g0)}
        window_steps |= {(env, g) for g in range(g0, g0 + n)}
    only_burn = burn_steps - window_steps
    assert only_burn
    columns = agent.replay.layout.columns
    storage = agent.replay.storage
    for env, g in only_burn:
        slot = env * region + g % region
        storage[slot, columns["rewards"]] = 1e6
        storage[slot, columns["actions"]] = (storage[slot, columns["actions"]] + 1) % 3
    agent.replay.rng.bit_generator.state = rng_state
    assert_same_loss(loss_and_grads(agent, agent.replay.sample(8)), base)
    env, g = sorted(window_steps)[0]
    storage[env * region + g % region, columns["rewards"]] = -1e4  # past the Huber kink: the gradient changes too
    agent.replay.rng.bit_generator.state = rng_state
    assert differs(loss_and_grads(agent, agent.replay.sample(8)), base)


def tmaze_step(agent, env: gym.Env, obs: np.ndarray) -> tuple[np.ndarray, bool]:
    """One step as the env loop (runners/env_loop.py) takes it, for one env."""
    actions = agent.act(obs[None], explore=True)
    next_obs, reward, terminated, truncated, _ = env.step(int(actions[0]))
    agent.observe(
        Transition(
            obs[None], actions, np.array([reward]), next_obs[None], np.array([terminated]), np.array([truncated]), {}
        )
    )
    if terminated or truncated:
        agent.reset(np.array([True]))
        next_obs, _ = env.reset()
    return next_obs, terminated or truncated


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(["agent.cell=lstm"], id="lstm-episodes"),
        pytest.param(
            ["agent.cell=gru", "agent.replay=windows", "agent.burn_in=2", "agent.stored_state=true"],
            id="gru-windows-stored-state",
        ),
    ],
)
def test_acting_continues_from_the_state_it_had_before_an_update(tiny_config, overrides: list[str]) -> None:
    """On the T-maze, mid-episode: updates change the online net but leave agent.acting.state bit-identical, and
    the next act is the updated online net's greedy action from that state, leaving its next state."""
    cfg = tiny_config(
        "agent=drqn",
        "env=tmaze",
        "env.kwargs.length=3",
        "net.hidden=8",
        "agent.rnn_hidden=8",
        "agent.batch_size=4",
        "agent.learning_starts=10",
        "agent.sequence_length=4",
        "agent.epsilon_start=1.0",
        "agent.epsilon_end=1.0",
        *overrides,
    )
    torch.manual_seed(0)
    agent = make_agent(cfg)
    env = make_env(cfg.env)
    obs, _ = env.reset(seed=0)
    episode_steps = 0
    for _ in range(400):
        obs, done = tmaze_step(agent, env, obs)
        episode_steps = 0 if done else episode_steps + 1
        if agent.ready_to_learn() and episode_steps >= 2:
            break
    assert agent.ready_to_learn() and episode_steps >= 2
    saved = agent.acting.state.clone()
    assert saved.abs().sum() > 0
    before = [p.detach().clone() for p in agent.params]
    for _ in range(3):
        agent.update()
    assert any(not torch.equal(p, q) for p, q in zip(agent.params, before))
    assert torch.equal(agent.acting.state, saved)
    agent.exploration = dataclasses.replace(agent.exploration, start=0.0, end=0.0)
    with torch.no_grad():
        q, next_state = agent.online(torch.from_numpy(obs).float().view(1, 1, -1), saved)
    actions = agent.act(obs[None], explore=True)
    assert actions[0] == int(q[0, 0].argmax())
    assert torch.equal(agent.acting.state, next_state)
    assert torch.equal(agent.state_before_act, saved)
    if agent.stored_state:  # the stored acting state of the next step is the one it was chosen from
        next_obs, reward, terminated, truncated, _ = env.step(int(actions[0]))
        agent.observe(
            Transition(
                obs[None],
                actions,
                np.array([reward]),
                next_obs[None],
                np.array([terminated]),
                np.array([truncated]),
                {},
            )
        )
        row = agent.replay.storage[(int(agent.replay.written[0]) - 1) % agent.replay.region]
        assert torch.equal(agent.replay.layout.unpack(row[None])["state"][0], saved[0])


@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.value)
def test_reset_and_evaluation_touch_only_their_own_state(cell: RecurrentCell) -> None:
    """3 training envs: reset(done) zeroes exactly the done rows of the acting state and cuts their open
    episodes; reset(.., explore=False) renews only the evaluation state; act(.., explore=False) steps the
    evaluation state from zero like a manual forward and never changes the acting state."""
    agent = make_drqn(cell=cell, num_envs=3)
    size = {RecurrentCell.lstm: 12, RecurrentCell.gru: 6, RecurrentCell.none: 0}[cell]  # rnn_hidden 6
    rng = np.random.default_rng(0)
    observations = [rng.normal(size=(3, OBS)).astype(np.float32) for _ in range(3)]
    for obs in observations[:2]:
        actions = agent.act(obs, explore=True)
        agent.observe(Transition(obs, actions, np.zeros(3), obs, np.zeros(3, bool), np.zeros(3, bool), {}))
    agent.act(observations[0][:1], explore=False)
    eval_saved = agent.eval_state.clone()
    saved = agent.acting.state.clone()
    assert saved.shape == (3, size) and bool((saved != 0).any(dim=1).all()) == (size > 0)

    agent.reset(np.array([False, True, False]))
    assert torch.equal(agent.acting.state[[0, 2]], saved[[0, 2]])
    assert torch.equal(agent.acting.state[1], torch.zeros(size))
    assert torch.equal(agent.eval_state, eval_saved)
    assert agent.replay.sampleable() == 1  # env 1's open two steps

    acting = agent.acting.state.clone()
    agent.reset(np.array([True]), explore=False)
    assert torch.equal(agent.eval_state, torch.zeros(1, size))
    assert torch.equal(agent.acting.state, acting)
    assert agent.replay.sampleable() == 1
    state = torch.zeros(1, size)
    for obs in observations:
        action = agent.act(obs[:1], explore=False)
        with torch.no_grad():
            q, state = agent.online(torch.from_numpy(obs[:1]).view(1, 1, -1), state)
        assert action[0] == int(q[0, 0].argmax())
        assert torch.equal(agent.acting.state, acting)
        assert agent.state_before_act is None
    torch.testing.assert_close(agent.eval_state, state, rtol=0, atol=1e-6)


@pytest.mark.parametrize("start", [0, 3])
def test_discrete_observations_are_one_hot_encoded(start: int) -> None:
    """Discrete(5, start): the net's input is 5 wide, acting on indices equals a forward of their one-hot
    vectors, and the replay stores one-hot obs and next_obs."""
    agent = make_drqn(observation_space=gym.spaces.Discrete(5, start=start), num_envs=3)
    assert agent.online.torso[0].in_features == 5
    obs = np.array([4, 0, 2]) + start
    next_obs = np.array([1, 3, 2]) + start
    one_hot = torch.eye(5)
    with torch.no_grad():
        q, state = agent.online(
            one_hot[torch.from_numpy(obs - start)].unsqueeze(1), torch.zeros(3, agent.online.state_size)
        )
    actions = agent.act(obs, explore=True)
    np.testing.assert_array_equal(actions, q[:, 0].argmax(-1).numpy())
    torch.testing.assert_close(agent.acting.state, state, rtol=0, atol=1e-6)
    done = np.ones(3, dtype=bool)
    agent.observe(Transition(obs, actions, np.zeros(3), next_obs, done, ~done, {}))
    batch = agent.replay.sample(32)
    pairs = {(int(o.argmax()), int(n.argmax())) for o, n in zip(batch.obs[:, 0], batch.next_obs[:, 0])}
    assert pairs == {(4, 1), (0, 3), (2, 2)}
    assert torch.equal(batch.obs[:, 0].sum(-1), torch.ones(32)) and set(batch.obs.unique().tolist()) == {0.0, 1.0}


def test_batch_norm_is_refused(tiny_config) -> None:
    """net.norm=batch would mix the steps of a sequence: a ValueError, through the config and directly;
    net.norm=layer is fine."""
    with pytest.raises(ValueError, match="norm=batch"):
        make_agent(tiny_config("agent=drqn", "env=tmaze", "net.norm=batch"))
    with pytest.raises(ValueError, match="norm=batch"):
        make_drqn(net=NET | {"norm": Norm.batch})
    agent = make_drqn(net=NET | {"norm": Norm.layer})
    assert any(isinstance(m, nn.LayerNorm) for m in agent.online.modules())
