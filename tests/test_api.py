"""rl_runner.api: a trained agent used from Python (load_policy, load_agent), on tiny real runs made in-process."""

from __future__ import annotations

import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from rl_runner.api import Policy, load_agent, load_policy
from rl_runner.checkpoint import load_state
from rl_runner.config import compose_config
from rl_runner.evaluate import evaluate_run
from rl_runner.runners.env_loop import EVAL_SEED_OFFSET
from rl_runner.training import train
from tests.conftest import TINY, TINY_DATA, write_series

DDPG = [*TINY, "env=pendulum"]  # checkpoints at steps 150 and 300
RAINBOW = [*TINY, "agent=rainbow", "env=cartpole"]
DRQN = [*TINY, "agent=drqn", "env=tmaze", "env.kwargs.length=3", "net.hidden=16", "agent.rnn_hidden=16"]


def make_run(run_dir: Path, overrides: list[str]) -> Path:
    """A finished run that rl-eval (and so the API) can read: trained in-process, with the ``.hydra/overrides.yaml``
    the command line would have written."""
    train(compose_config(overrides), run_dir=run_dir)
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return run_dir


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny networks run fastest on one thread, and two threads per process thrash a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ddpg_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("ddpg") / "run", DDPG)


@pytest.fixture(scope="module")
def rainbow_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("rainbow") / "run", RAINBOW)


@pytest.fixture(scope="module")
def drqn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("drqn") / "run", DRQN)


def play_episode(policy: Policy, seed: int) -> float:
    env = policy.make_env()
    try:
        obs, _ = env.reset(seed=seed)
        policy.reset()
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
            total += float(reward)
            done = terminated or truncated
    finally:
        env.close()
    return total


def sample_observations(space: gym.spaces.Space, count: int) -> np.ndarray:
    space.seed(0)
    return np.stack([space.sample() for _ in range(count)])


def test_ddpg_policy_acts_on_one_observation_or_a_batch_within_the_bounds(ddpg_run: Path) -> None:
    policy = load_policy(ddpg_run)
    assert policy.checkpoint.name == "step_000000000300" and policy.device == torch.device("cpu")
    assert not policy.recurrent and not policy.agent.actor.training  # evaluation mode
    space = policy.action_space
    observations = sample_observations(policy.observation_space, 8)

    action = policy.act(observations[0])
    assert action.shape == space.shape == (1,) and action.dtype == np.float32
    np.testing.assert_array_equal(policy.act(observations[0]), action)  # deterministic: no exploration noise
    np.testing.assert_array_equal(policy.act(observations[0].tolist()), action)  # any array-like

    actions = policy.act(observations)
    assert actions.shape == (8, 1) and actions.dtype == np.float32
    assert np.all((space.low <= actions) & (actions <= space.high))
    singles = np.stack([policy.act(obs) for obs in observations])
    np.testing.assert_allclose(actions, singles, rtol=1e-6, atol=1e-6)  # batched matmuls may round differently

    with pytest.raises(ValueError, match=r"one observation of shape \(3,\) or a batch of shape \(B, 3\), got"):
        policy.act(np.zeros(4))


@pytest.mark.parametrize("run", ["ddpg_run", "rainbow_run", "drqn_run"])
def test_policy_plays_the_episode_rl_eval_plays(run: str, request: pytest.FixtureRequest) -> None:
    """Same checkpoint, device and seed: the same actions, so exactly the same return as rl-eval's episode."""
    run_dir = request.getfixturevalue(run)
    policy = load_policy(run_dir)
    expected = evaluate_run(run_dir, {"episodes": "1", "device": "cpu"})["return_mean"]
    assert play_episode(policy, int(policy.cfg.seed) + EVAL_SEED_OFFSET) == expected


def test_rainbow_policy_returns_int_actions(rainbow_run: Path) -> None:
    policy = load_policy(rainbow_run, device="auto")
    assert not policy.recurrent and isinstance(policy.action_space, gym.spaces.Discrete)
    observations = sample_observations(policy.observation_space, 16)
    action = policy.act(observations[0])
    assert isinstance(action, np.int64) and policy.action_space.contains(action)
    actions = policy.act(observations)
    assert actions.shape == (16,) and actions.dtype == np.int64
    assert all(policy.action_space.contains(a) for a in actions)
    assert [policy.act(obs) for obs in observations] == actions.tolist()  # noisy layers act with their mean weights
    np.testing.assert_array_equal(policy.act(observations[:3]), actions[:3])  # feed-forward: any batch size


def test_drqn_policy_carries_a_hidden_state_per_episode_until_reset(drqn_run: Path) -> None:
    policy = load_policy(drqn_run)
    assert policy.recurrent
    sequence = sample_observations(policy.observation_space, 6)
    actions = [policy.act(obs) for obs in sequence]
    policy.reset()
    assert [policy.act(obs) for obs in sequence] == actions  # reset: the same episode again, the same actions

    # what act did step by step is the network unrolled over the whole sequence from a zero state
    agent = policy.agent
    inputs = torch.as_tensor(agent.encode(sequence))[None]  # [1, T, O]
    start = agent.online.core.initial_state(1, policy.device)
    with torch.no_grad():
        unrolled, _ = agent.online(inputs, start)  # [1, T, A]
        alone = torch.cat([agent.online(inputs[:, t : t + 1], start)[0] for t in range(len(sequence))], dim=1)
    assert unrolled[0].argmax(dim=-1).tolist() == actions
    assert not torch.allclose(unrolled[0, 1:], alone[0, 1:])  # the memory matters: later steps see earlier ones

    # a batch: one episode per row, each the same as played alone
    policy.reset()
    rows = [policy.act(np.stack([obs, obs, obs])) for obs in sequence]
    assert all(row.shape == (3,) and row.tolist() == [action] * 3 for row, action in zip(rows, actions))
    with pytest.raises(ValueError, match=r"hidden states for 3 episode\(s\) and got a batch of 1: call reset\(\)"):
        policy.act(sequence[0])
    policy.reset()
    assert policy.act(sequence[0]) == actions[0]  # after reset(): any batch size again


def test_a_checkpoint_is_chosen_by_directory_name_or_step(ddpg_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = ddpg_run / "checkpoints" / "step_000000000150"
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    by_directory = load_policy(first)
    assert torch.equal(torch.rand(3), expected)  # building the agent left the caller's random stream alone
    assert by_directory.checkpoint == first and by_directory.trained.run_dir == ddpg_run
    assert load_policy(ddpg_run, checkpoint=150).checkpoint == first
    assert load_policy(ddpg_run / "checkpoints").checkpoint.name == "step_000000000300"  # the latest
    monkeypatch.chdir(first)
    assert load_policy(".").checkpoint == first  # a relative path
    best = ddpg_run / "checkpoints" / "best"
    if not best.exists():  # the runner keeps checkpoints/best with checkpoint.best=true; else step 150 stands in
        shutil.copytree(first, best)
    from_best = load_policy(ddpg_run, checkpoint="best", device="cpu")
    assert from_best.checkpoint == best
    saved = load_state(best, "actor")  # best's own files were loaded
    assert all(torch.equal(value, saved[key]) for key, value in from_best.agent.actor.state_dict().items())


def test_paths_that_are_not_a_run_or_a_checkpoint_are_clear_errors(ddpg_run: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        load_policy(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"is neither a run directory \(no .hydra/overrides.yaml\) nor a checkpoint"):
        load_policy(tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"no checkpoint 'step_7' under .*; available: step_000000000150, step_000000000300"
    ):
        load_policy(ddpg_run, checkpoint="step_7")
    first = ddpg_run / "checkpoints" / "step_000000000150"
    with pytest.raises(ValueError, match="is a checkpoint directory already; checkpoint='best' contradicts it"):
        load_policy(first, checkpoint="best")
    stray = shutil.copytree(first, tmp_path / "stray")
    with pytest.raises(ValueError, match="holds checkpoint files but is not inside a run"):
        load_policy(stray)
    empty_run = tmp_path / "empty_run"
    shutil.copytree(ddpg_run / ".hydra", empty_run / ".hydra")
    with pytest.raises(FileNotFoundError, match="no step_\\* checkpoint under .*; the run has saved none yet"):
        load_agent(empty_run)


def test_a_dataset_run_loads_as_an_agent_but_has_no_policy(tmp_path: Path) -> None:
    overrides = [*TINY_DATA, f"data.path={write_series(tmp_path / 'series.csv')}"]
    run_dir = make_run(tmp_path / "run", overrides)
    with pytest.raises(ValueError, match=r"is a dataset run \(agent=autoencoder.*`rl-eval .*`.*load_agent"):
        load_policy(run_dir)
    trained = load_agent(run_dir)
    assert trained.kind == "data" and trained.observation_space is None and trained.threshold is not None
    windows = torch.as_tensor(trained.data.val.values)
    with torch.no_grad():
        scores = trained.agent.score(windows)
    assert scores.shape == (len(windows),) and torch.isfinite(scores).all()
    with pytest.raises(ValueError, match="is a dataset run"):
        Policy(trained)
