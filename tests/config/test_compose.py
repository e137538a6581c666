"""Composition (rl_runner/config/compose.py): presets, defaults, overrides with their types, and overrides that
fail with one line naming the problem, every value of a sweep included."""

from __future__ import annotations

import pytest

from rl_runner.choices import Init, Norm
from rl_runner.config import ConfigError, check_compatibility, compose_config, validate_overrides
from rl_runner.networks import resolve_net_spec
from tests.config.helpers import GROUPS


@pytest.mark.parametrize("experiment", GROUPS["experiment"])
def test_every_experiment_preset_composes_into_a_runnable_pair(experiment: str) -> None:
    cfg = compose_config([f"experiment={experiment}", "total_steps=123"])
    check_compatibility(cfg)
    assert cfg.total_steps == 123  # the command line still wins over a preset


def test_defaults_are_ddpg_on_halfcheetah_with_cleanrl_settings() -> None:
    cfg = compose_config([])
    assert (cfg.agent.name, cfg.env.id, cfg.env.action_space) == ("ddpg", "HalfCheetah-v5", None)  # the env's own
    assert (cfg.net.hidden, cfg.net.depth) == (256, 2)
    assert (cfg.agent.alpha, cfg.agent.beta, cfg.agent.tau, cfg.agent.batch_size, cfg.agent.noise_scale) == (
        3e-4,
        3e-4,
        0.005,
        256,
        0.1,
    )
    assert cfg.device == "auto" and cfg.env.num_envs == 1


def test_overrides_from_the_brief_apply_with_their_types() -> None:
    cfg = compose_config(
        [
            "agent=ddpg",
            "env=halfcheetah",
            "agent.alpha=1e-3",
            "net.hidden=32",
            "seed=3",
            "total_steps=200000",
            "net.norm=layer",
            "net.init=he",
            "agent.critic_net.hidden=64",
        ]
    )
    assert cfg.agent.alpha == pytest.approx(1e-3) and isinstance(cfg.agent.alpha, float)
    assert (cfg.net.hidden, cfg.seed, cfg.total_steps) == (32, 3, 200000)
    assert cfg.net.norm is Norm.layer and cfg.net.init is Init.he
    assert resolve_net_spec(cfg.net, cfg.agent.critic_net).hidden == 64
    assert resolve_net_spec(cfg.net, cfg.agent.actor_net).hidden == 32


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("agent.alpha=fast", "agent.alpha"),
        ("agent.tpyo=1", "tpyo"),
        ("net.norm=weight", "weight"),
        ("net.init=zeros", "zeros"),
        ("agent=ppo", "agent/ppo"),
        ("env=doom", "env/doom"),
        ("net.hidden=1.5", "net.hidden"),
        ("total_steps=many", "total_steps"),
        ("device=tpu", "tpu"),
        ("env.num_envs=two", "env.num_envs"),
        ("hydra.run.dir=out/a=b", "hydra.run.dir=out/a=b"),
        ("agent.gamma=1.5", "agent.gamma=1.5 must be in [0.0, 1.0]"),
        ("agent.tau=0", "agent.tau=0.0 must be in (0.0, 1.0]"),
        ("agent.batch_size=0", "agent.batch_size=0 must be positive"),
        ("env.num_envs=0", "env.num_envs=0 must be positive"),
        ("total_steps=-5", "total_steps=-5 must be positive"),
        ("agent.critic_net.hidden=0", "agent.critic_net.hidden=0 must be null or at least 1"),
        ("env=null", "env=null: a config group cannot be set to null; remove it with ~env"),
        ("~net", "no value for net"),
        ("agent=autoencoder", "no value for data.path"),
        ("agent=autoencoder data.path=x data.val_fraction=1", "data.val_fraction=1.0 must be in (0.0, 1.0)"),
    ],
)
def test_bad_overrides_fail_with_one_line_naming_the_problem(override: str, names: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate_overrides(override.split(" "))
    assert names in str(error.value)
    assert "\n" not in str(error.value)


def test_every_value_of_a_sweep_is_checked() -> None:
    validate_overrides(["seed=0,1,2", "agent.tau=0.005,0.01"])
    with pytest.raises(ConfigError, match="agent.tau"):
        validate_overrides(["seed=0,1", "agent.tau=0.005,oops"])
    with pytest.raises(ConfigError, match="agent.tau=2.0 must be in"):  # a value check, not a type check
        validate_overrides(["seed=0,1", "agent.tau=0.005,2.0"])
