"""A user's own envs (issue 19): a package of the user's, written here into a temporary folder and put on the
PYTHONPATH of the subprocesses, with Discrete, Dict (Discrete + Box) and Box observations, named by
``env.id=<module>:<id>`` (from an env group option in a config folder of the user's, ``hydra.searchpath=
[file://<relative dir>]``), ``env.imports=[<module>]`` with the bare id, and ``env.id=<module>:<Class>``. Each trains
through the real command line, stops on SIGTERM in the middle, then, from another directory and told nothing but
the run directory, resumes with ``rl-train resume=<run>`` to the end; then one fresh process, which has imported
nothing of the user's, loads each run with ``load_policy(<run>)`` and evaluates it with rl-eval. Also gymnasium's
FrozenLake-v1 (Discrete observations) end to end in-process.

Which agent meets which observation space: Rainbow on Discrete (own package, FrozenLake), DRQN on Dict (own
package, with actions numbered from -1) and Discrete (FrozenLake), DDPG on Box observations with Box actions. The
envs assert that every action they are given is one of their action space. Rainbow on Dict is left out: the
flattening it would test is the one DRQN's case runs (rl_runner/envs/make.py:flat_observations).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from rl_runner.checkpoint import latest_checkpoint, load_state
from rl_runner.runners.record import read_record
from tests.conftest import REPO_ROOT
from tests.contract import make_run

PACKAGE = "tiny_own_envs"  # the user's module: importing it registers TinyChain-v0 and TinyDictChain-v0

SOURCE = textwrap.dedent(
    '''
    """Three tiny envs of a user's own package; importing this module registers two of them."""

    import gymnasium as gym
    import numpy as np
    from gymnasium import spaces


    class Chain(gym.Env):
        """Discrete observations (the cell), two actions: 1 steps right, 0 left; 1 at the right end."""

        def __init__(self, length=5):
            self.length = length
            self.observation_space = spaces.Discrete(length)
            self.action_space = spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.cell = 0
            return self.cell, {}

        def step(self, action):
            assert self.action_space.contains(action), f"{action!r} is no action of {self.action_space}"
            self.cell = int(np.clip(self.cell + (1 if int(action) == 1 else -1), 0, self.length - 1))
            done = self.cell == self.length - 1
            return self.cell, float(done) - 0.01, done, False, {}


    class DictChain(Chain):
        """Dict observations: the cell (Discrete) and a noisy reading (Box); three actions numbered from -1: left,
        stay, right."""

        def __init__(self, length=5):
            super().__init__(length)
            self.observation_space = spaces.Dict(
                {"cell": spaces.Discrete(length), "reading": spaces.Box(-1.0, 1.0, (2,), np.float32)}
            )
            self.action_space = spaces.Discrete(3, start=-1)

        def _obs(self):
            return {"cell": self.cell, "reading": self.np_random.uniform(-1, 1, 2).astype(np.float32)}

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self._obs(), {}

        def step(self, action):
            assert self.action_space.contains(action), f"{action!r} is no action of {self.action_space}"
            self.cell = int(np.clip(self.cell + int(action), 0, self.length - 1))
            done = self.cell == self.length - 1
            return self._obs(), float(done) - 0.01, done, False, {}


    class Reach(gym.Env):
        """Box observations (position, target), Box actions moving the point; it ends itself after 25 steps (a
        class used as the entry point has no registered time limit)."""

        def __init__(self):
            self.observation_space = spaces.Box(-2.0, 2.0, (4,), np.float32)
            self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

        def _obs(self):
            return np.concatenate([self.position, self.target]).astype(np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.position, self.target, self.steps = np.zeros(2), self.np_random.uniform(-1, 1, 2), 0
            return self._obs(), {}

        def step(self, action):
            assert self.action_space.contains(action), f"{action!r} is no action of {self.action_space}"
            self.position = np.clip(self.position + 0.1 * action, -2, 2)
            self.steps += 1
            return self._obs(), -float(np.linalg.norm(self.position - self.target)), False, self.steps >= 25, {}


    gym.register("TinyChain-v0", entry_point=Chain, max_episode_steps=20)
    gym.register("TinyDictChain-v0", entry_point=DictChain, max_episode_steps=20)
    '''
)

# two hundred steps on one thread (several torch threads on 2 busy cores are many times slower)
TINY_OWN = [
    "device=cpu",
    "progress=false",
    "threads=1",
    "net.hidden=16",
    "agent.batch_size=16",
    "agent.learning_starts=50",
    "agent.buffer_size=1000",
    "agent.updates_per_step=0.25",
    "total_steps=200",
    "log.every=100",
    "eval.every=0",
    "eval.episodes=1",
    "checkpoint.every=100",
]
STOP_AT, TOTAL = 120, 200  # the SIGTERM comes between two checkpoints

# rl-train (its real entry point, as `python -m rl_runner.train`) sent SIGTERM by itself once its loop reaches a
# step (tests/conftest.py:interrupt_at), as a scheduler stopping the job would: `python -c TRAIN_UNTIL STEP <args>`
TRAIN_UNTIL = textwrap.dedent(
    """
    import runpy, sys
    from pytest import MonkeyPatch
    from tests.conftest import interrupt_at
    interrupt_at(MonkeyPatch(), int(sys.argv[1]))
    sys.argv = ["rl-train", *sys.argv[2:]]
    runpy.run_module("rl_runner.train", run_name="__main__")
    """
)

# A fresh process that has imported nothing of the user's (each run's saved config names the module to import): for
# each run given, load_policy plays an episode, then rl-eval's command line (rl_runner.evaluate.main) evaluates the
# run. One process for all the runs: a Python start with torch costs more than loading and evaluating them.
LOAD_AND_EVALUATE = textwrap.dedent(
    f"""
    import sys
    from rl_runner.api import load_policy
    from rl_runner.evaluate import main as rl_eval
    assert {PACKAGE!r} not in sys.modules
    for run in sys.argv[1:]:
        policy = load_policy(run)
        assert {PACKAGE!r} in sys.modules
        env = policy.make_env()
        obs, _ = env.reset(seed=0)
        policy.reset()
        done, steps = False, 0
        while not done:
            action = policy.act(obs)
            assert policy.action_space.contains(action), action
            obs, reward, terminated, truncated, _ = env.step(action)
            done, steps = terminated or truncated, steps + 1
        print("policy", policy.cfg.agent.name, policy.cfg.env.id, type(policy.observation_space).__name__,
              policy.observation_space.shape, type(policy.action_space).__name__, "steps", steps)
        rl_eval([run, "episodes=1"])
    """
)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding the user's module (not importable from the repository)."""
    folder = tmp_path_factory.mktemp("user_package")
    (folder / f"{PACKAGE}.py").write_text(SOURCE)
    return folder


def user_environment(package: Path) -> dict[str, str]:
    """The subprocesses' environment: the user's package (and the repository, for tests.conftest) on the path, and
    one torch thread per process."""
    path = [str(package), str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1"}


def python(args: list[str], package: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=user_environment(package), capture_output=True, text=True, timeout=300
    )


def step_of(checkpoint: Path) -> int:
    return load_state(checkpoint, "progress")["clock"]["step"]


CONFIG_FOLDER_ENV = textwrap.dedent(
    f"""
    # the user's own option of the env group, in a config folder of theirs
    defaults:
      - /schema/env/env@_here_
      - _self_

    id: {PACKAGE}:TinyChain-v0
    num_envs: 1
    max_episode_steps: null
    wrappers: {{}}
    kwargs:
      length: 4
    """
)

OWN_ENVS = {  # agent: (how the env is named, its id, the policy's spaces as load_policy sees them)
    "rainbow": (  # Discrete(4) observations (one-hot), the env group option my_env of the user's config folder
        ["env=my_env", "hydra.searchpath=[file://conf_dir]"],  # relative to the directory rl-train starts in
        f"{PACKAGE}:TinyChain-v0",  # a registered id behind its module
        "Box (4,) Discrete",
    ),
    "drqn": (  # Dict observations (the one-hot cell and the reading), the module in env.imports, the bare id
        ["env=gym", f"env.imports=[{PACKAGE}]", "env.id=TinyDictChain-v0", "agent.rnn_hidden=16"],
        "TinyDictChain-v0",
        "Box (7,) Discrete",
    ),
    "ddpg": (  # Box observations, Box actions, a class as the entry point
        ["env=gym", f"env.id={PACKAGE}:Reach"],
        f"{PACKAGE}:Reach",
        "Box (4,) Box",
    ),
}


@dataclass
class OwnRun:
    run_dir: Path
    first: Path  # where rl-train started, with the user's config folder conf_dir/
    stopped: subprocess.CompletedProcess
    stopped_status: str  # run.json's status after the SIGTERM
    stopped_step: int | None  # the latest checkpoint's step after the SIGTERM
    resumed: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def own_runs(package: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, OwnRun]:
    """Each agent on its env: rl-train from one directory, SIGTERM at STOP_AT; then, from another directory and told
    nothing but the run directory, ``rl-train resume=<run>`` to the end. The tests below judge the outcome."""
    runs = {}
    for agent, (env_args, _, _) in OWN_ENVS.items():
        root = tmp_path_factory.mktemp(f"own_{agent}")
        first, later, run_dir = root / "first", root / "later", root / "run"
        (first / "conf_dir" / "env").mkdir(parents=True)
        (first / "conf_dir" / "env" / "my_env.yaml").write_text(CONFIG_FOLDER_ENV)
        later.mkdir()
        args = [f"agent={agent}", *env_args, *TINY_OWN, f"hydra.run.dir={run_dir}"]
        stopped = python(["-c", TRAIN_UNTIL, str(STOP_AT), *args], package, cwd=first)
        checkpoint = latest_checkpoint(run_dir / "checkpoints")
        status = read_record(run_dir)["status"] if (run_dir / "run.json").is_file() else "no run.json"
        step = None if checkpoint is None else step_of(checkpoint)
        # from another directory, with nothing but the run directory (the user's package is installed: on the path)
        resumed = python(["-m", "rl_runner.train", f"resume={run_dir}"], package, cwd=later)
        runs[agent] = OwnRun(run_dir, first, stopped, status, step, resumed)
    return runs


@pytest.mark.parametrize("agent", list(OWN_ENVS))
def test_an_env_of_the_users_package_trains_stops_on_sigterm_and_resumes_from_elsewhere(
    agent: str, own_runs: dict[str, OwnRun]
) -> None:
    run = own_runs[agent]
    env_args, env_id, _ = OWN_ENVS[agent]
    assert run.stopped.returncode == 130, run.stopped.stdout[-3000:] + run.stopped.stderr[-3000:]
    assert f"stopped by a signal; continue with: rl-train resume={run.run_dir}" in run.stopped.stdout
    assert (run.stopped_status, run.stopped_step) == ("interrupted", STOP_AT)

    assert run.resumed.returncode == 0, run.resumed.stdout[-3000:] + run.resumed.stderr[-3000:]
    assert step_of(latest_checkpoint(run.run_dir / "checkpoints")) == TOTAL
    record = read_record(run.run_dir)
    assert [attempt["status"] for attempt in record["attempts"]] == ["interrupted", "finished"]
    assert record["env"] == env_id

    saved = yaml.safe_load((run.run_dir / ".hydra" / "overrides.yaml").read_text())
    if agent == "rainbow":  # the config folder, absolute, so that any directory finds it
        assert f"hydra.searchpath=[file://{run.first / 'conf_dir'}]" in saved
    assert set(env_args) - {"hydra.searchpath=[file://conf_dir]"} <= set(saved)


def test_the_runs_load_and_evaluate_in_a_fresh_process_from_elsewhere(
    own_runs: dict[str, OwnRun], package: Path, tmp_path: Path
) -> None:
    """load_policy(<run>) and rl-eval <run>, from a directory that is neither the repository nor where the runs
    started, without the config (nor the config folder) repeated."""
    runs = [str(run.run_dir) for run in own_runs.values()]
    loaded = python(["-c", LOAD_AND_EVALUATE, *runs], package, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    lines = loaded.stdout.strip().splitlines()
    assert len(lines) == 2 * len(OWN_ENVS), lines
    for (agent, (_, env_id, spaces)), run, policy, evaluated in zip(OWN_ENVS.items(), runs, lines[::2], lines[1::2]):
        assert policy.startswith(f"policy {agent} {env_id} {spaces} steps "), policy
        checkpoint = Path(run) / "checkpoints" / f"step_{TOTAL:012d}"
        assert evaluated.startswith(f"rl-eval: 1 episodes from {checkpoint}: return "), evaluated


# ------------------------------------------------------------------------------------------- FrozenLake
FROZEN_LAKE = [
    "env=gym",
    "env.id=FrozenLake-v1",
    "+env.kwargs.is_slippery=false",
    "env.max_episode_steps=30",
    *TINY_OWN,
    "eval.episodes=2",
]


@pytest.mark.parametrize("agent", ["drqn", "rainbow"])
def test_frozen_lake_end_to_end(agent: str, tmp_path: Path, monkeypatch, capsys, one_thread) -> None:
    """FrozenLake-v1 observes Discrete(16): one-hot for the agents, in training and in rl-eval."""
    from rl_runner.api import load_policy
    from rl_runner.evaluate import main as rl_eval

    run_dir = tmp_path / "run"
    extra = ["agent.rnn_hidden=16"] if agent == "drqn" else []
    summary = make_run(run_dir, [f"agent={agent}", *FROZEN_LAKE, *extra], monkeypatch)
    assert summary["step"] == TOTAL and summary["updates"] > 0 and "eval/return_mean" in summary
    capsys.readouterr()
    rl_eval([str(run_dir), "episodes=2"])
    out = capsys.readouterr().out
    assert out.startswith(f"rl-eval: 2 episodes from {run_dir / 'checkpoints' / f'step_{TOTAL:012d}'}: return "), out
    policy = load_policy(run_dir)
    assert policy.observation_space.shape == (16,) and policy.action_space.n == 4
    env = policy.make_env()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (16,) and obs.sum() == 1.0 and obs[0] == 1.0  # one-hot: the start cell
    assert policy.action_space.contains(policy.act(obs))
