"""The config checks (rl_runner/config/checks.py): agent, env and data pairs that cannot run, out-of-range
values, and settings that are legal but useless."""

from __future__ import annotations

import pytest

from rl_runner.config import ConfigError, check_compatibility, compose_config, validate_overrides
from rl_runner.data import SOURCES
from rl_runner.registry import runner_entry
from tests.config.helpers import GROUPS


def agent_needs(agent: str) -> str:
    return runner_entry(compose_config([f"agent={agent}"]).agent.runner).needs


# what each env group's env really acts with, written out: the checks read it from the env itself
ACTIONS = {
    "breakout": "discrete",
    "cartpole": "discrete",
    "cartpole_pomdp": "discrete",
    "gym": "discrete",
    "halfcheetah": "continuous",
    "minatar_breakout": "discrete",
    "pendulum": "continuous",
    "tmaze": "discrete",
    "tmaze_both": "discrete",
    "tmaze_two_goal": "discrete",
}


@pytest.mark.parametrize("env", GROUPS["env"])
@pytest.mark.parametrize("agent", GROUPS["agent"])
def test_every_agent_env_pair_composes_and_incompatible_pairs_say_why(agent: str, env: str) -> None:
    cfg = compose_config([f"agent={agent}", f"env={env}", *(["env.id=CartPole-v1"] if env == "gym" else [])])
    assert cfg.agent.name == agent
    acts = ACTIONS[env] in [space.value for space in cfg.agent.get("action_spaces", [])]
    if agent_needs(agent) == "data":
        with pytest.raises(ConfigError, match=f"agent={agent} learns from data, not from an environment: drop env="):
            check_compatibility(cfg)
    elif acts and cfg.net.name in list(cfg.agent.nets):
        check_compatibility(cfg)
    elif acts:  # a pixel env's conv torso, for an MLP agent
        with pytest.raises(ConfigError, match=f"agent={agent} cannot build net={cfg.net.name}; it builds mlp"):
            check_compatibility(cfg)
    else:
        with pytest.raises(
            ConfigError, match=f"agent={agent} cannot run on env.id={cfg.env.id}: it has {ACTIONS[env]}"
        ):
            check_compatibility(cfg)


@pytest.mark.parametrize("data", GROUPS["data"])
@pytest.mark.parametrize("agent", GROUPS["agent"])
def test_agents_that_learn_from_data_need_no_env_and_the_others_no_data(agent: str, data: str) -> None:
    cfg = compose_config([f"agent={agent}", f"data={data}"])
    if agent_needs(agent) == "data":
        assert cfg.env is None and cfg.data.source in SOURCES  # the agent's defaults drop the env group
        check_compatibility(cfg, sources=False)  # data=array has no data.path yet
    else:
        with pytest.raises(ConfigError, match=f"agent={agent} learns from an environment, not from data: drop data="):
            check_compatibility(cfg, sources=False)  # data=array has no data.path yet
    if agent_needs(agent) == "env":
        with pytest.raises(ConfigError, match="choose one with env="):
            check_compatibility(compose_config([f"agent={agent}", "~env"]))


@pytest.mark.parametrize(
    "override",
    [
        "agent.gamma=1.5",
        "agent.tau=2",
        "total_steps=-1",
        "agent.updates_per_step=-1",
        "log.every=0",
        "eval.episodes=-1",
        "checkpoint.keep=-1",
        "checkpoint.every=-5",
        "agent.batch_size=0",
        "agent.batch_size=-5",
        "env.num_envs=0",
        "agent.buffer_size=0",
        "agent.alpha=-1",
        "agent.noise_scale=-0.1",
        "env.max_episode_steps=0",
        "agent.updates_per_step=inf",
        "agent.alpha=inf",
        "agent.ou_theta=150",
    ],
)
def test_out_of_range_values_are_one_line_config_errors(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key}=\S+ must be "):
        validate_overrides([override])


WINDOWS = ["agent.replay=windows", "agent.sequence_length=4", "agent.burn_in=3", "agent.stored_state=true"]


def test_a_stored_state_without_a_recurrent_cell_is_a_warning() -> None:
    """Legal (a sweep over agent.cell=lstm,none keeps the other settings), but it has no effect: the user is told."""
    warnings = validate_overrides(["agent=drqn", "env=tmaze", *WINDOWS, "agent.cell=none"])
    assert any("agent.stored_state=true has no effect with agent.cell=none" in w for w in warnings)
    assert validate_overrides(["agent=drqn", "env=tmaze", *WINDOWS]) == []
