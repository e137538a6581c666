"""Composition of every config group, schema checks and the command line's one-line errors."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from rl_runner.agents import agent_class, hyperparameters, runner_owned_keys
from rl_runner.choices import ActionSpace, Activation, Init, Norm
from rl_runner.config import CONF_DIR, ConfigError, check_compatibility, validate_overrides
from rl_runner.data import SOURCES
from rl_runner.networks import build_mlp, resolve_net_spec
from rl_runner.networks.init import FANIN_FINAL_LAYER_BOUND
from rl_runner.registry import runner_entry
from tests.conftest import REPO_ROOT, cli, compose_config

GROUPS = {
    group: sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
    for group in ("agent", "env", "data", "net", "experiment")
}


def agent_needs(agent: str) -> str:
    return runner_entry(compose_config([f"agent={agent}"]).agent.runner).needs


@pytest.mark.parametrize("env", GROUPS["env"])
@pytest.mark.parametrize("agent", GROUPS["agent"])
def test_every_agent_env_pair_composes_and_incompatible_pairs_say_why(agent: str, env: str) -> None:
    cfg = compose_config([f"agent={agent}", f"env={env}"])
    assert cfg.agent.name == agent
    if agent_needs(agent) == "data":
        with pytest.raises(ConfigError, match=f"agent={agent} learns from data, not from an environment: drop env="):
            check_compatibility(cfg)
    elif cfg.env.action_space in list(cfg.agent.action_spaces) and cfg.net.name in list(cfg.agent.nets):
        check_compatibility(cfg)
    elif cfg.env.action_space in list(cfg.agent.action_spaces):  # a pixel env's conv torso, for an MLP agent
        with pytest.raises(ConfigError, match=f"agent={agent} cannot build net={cfg.net.name}; it builds mlp"):
            check_compatibility(cfg)
    else:
        with pytest.raises(ConfigError, match=f"agent={agent} cannot run on env={cfg.env.id}.*actions"):
            check_compatibility(cfg)


@pytest.mark.parametrize("data", GROUPS["data"])
@pytest.mark.parametrize("agent", GROUPS["agent"])
def test_agents_that_learn_from_data_need_no_env_and_the_others_no_data(agent: str, data: str) -> None:
    cfg = compose_config([f"agent={agent}", f"data={data}"])
    if agent_needs(agent) == "data":
        assert cfg.env is None and cfg.data.source in SOURCES  # the agent's defaults drop the env group
        check_compatibility(cfg)
    else:
        with pytest.raises(ConfigError, match=f"agent={agent} learns from an environment, not from data: drop data="):
            check_compatibility(cfg)
    if agent_needs(agent) == "env":
        with pytest.raises(ConfigError, match="choose one with env="):
            check_compatibility(compose_config([f"agent={agent}", "~env"]))


def test_run_directory_names_are_one_path_component() -> None:
    def run_dir(*overrides: str) -> str:
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
        return Path(cfg.hydra.run.dir).parent.name

    assert run_dir() == "ddpg_HalfCheetah-v5"
    assert run_dir("env.id=ALE/Breakout-v5") == "ddpg_ALE-Breakout-v5"
    assert run_dir("agent=autoencoder", "data.path=/data/pump 3/readings.csv") == "autoencoder_readings"


def test_every_schema_key_is_a_constructor_argument_and_the_reverse() -> None:
    """An agent key nobody reads, or a constructor argument no YAML sets, fails here."""
    for agent in GROUPS["agent"]:
        cfg = compose_config([f"agent={agent}"])
        owned = runner_owned_keys(cfg.agent.runner)
        parameters = inspect.signature(agent_class(agent).__init__).parameters
        arguments = {name for name, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
        assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in parameters.values()), agent
        context = {"off_policy": OFF_POLICY_CONTEXT, "dataset": DATASET_CONTEXT}[cfg.agent.runner]
        assert set(cfg.agent) - owned == arguments - context, agent
        assert set(hyperparameters(cfg.agent)) == arguments - context


OFF_POLICY_CONTEXT = {"net", "observation_space", "action_space", "num_envs", "device", "clock"}
DATASET_CONTEXT = {"net", "sample_shape", "device", "clock"}


def test_defaults_live_in_the_yaml_files_not_in_the_schemas() -> None:
    """A schema field with a default would be a second source for it (unless null means 'inherit')."""
    from rl_runner.schemas import SCHEMAS, Config

    for schema in [Config, *(s for group in SCHEMAS.values() for s in group.values())]:
        for field in dataclasses.fields(schema):
            if field.default_factory is not dataclasses.MISSING:  # a nested group: its own fields are checked
                continue
            assert field.default in ("???", None), f"{schema.__name__}.{field.name} = {field.default!r}"
    assert compose_config([]).agent.learning_starts == 25000


def test_the_mlp_net_composes_and_builds_what_it_says() -> None:
    cfg = compose_config(["net=mlp", "net.hidden=24", "net.depth=3"])
    assert cfg.net.name == "mlp"
    built = build_mlp(7, 3, resolve_net_spec(cfg.net))
    widths = [(m.in_features, m.out_features) for m in built if isinstance(m, nn.Linear)]
    assert widths == [(7, 24), (24, 24), (24, 24), (24, 3)]


@pytest.mark.parametrize("window", [60, 64, 9])
def test_the_conv1d_net_builds_gan_parts_for_any_window_length(window: int) -> None:
    """SKAB's 60-row windows are no power of two: the generator crops what it makes to the window."""
    from rl_runner.networks.conv1d import Discriminator, Encoder, Generator

    cfg = compose_config(["agent=anogan", "net.width=8", "net.depth=3"])
    assert cfg.net.name == "conv1d"
    generator = Generator(5, window, 4, cfg.net.width, cfg.net.depth)
    discriminator = Discriminator(window, 4, cfg.net.width, cfg.net.depth, spectral_norm=True)
    windows = generator(torch.randn(2, 5))
    assert windows.shape == (2, window, 4)
    output, features = discriminator(windows)
    assert output.shape == (2,) and features.shape[0] == 2
    assert Encoder(5, window, 4, cfg.net.width, cfg.net.depth)(windows).shape == (2, 5)
    with pytest.raises(ValueError, match="too short for net.depth=4"):
        Generator(5, 15, 4, 8, 4)


@pytest.mark.parametrize("experiment", GROUPS["experiment"])
def test_every_experiment_preset_composes_into_a_runnable_pair(experiment: str) -> None:
    cfg = compose_config([f"experiment={experiment}", "total_steps=123"])
    check_compatibility(cfg)
    assert cfg.total_steps == 123  # the command line still wins over a preset


def test_defaults_are_ddpg_on_halfcheetah_with_cleanrl_settings() -> None:
    cfg = compose_config([])
    assert (cfg.agent.name, cfg.env.id, cfg.env.action_space) == ("ddpg", "HalfCheetah-v5", ActionSpace.continuous)
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


def test_values_are_checked_again_inside_the_job(tiny_config, tmp_path: Path) -> None:
    """A sweeper may sample values the command line never showed: train() checks what it is given."""
    from rl_runner.train import train

    with pytest.raises(ConfigError, match="agent.gamma=2.0 must be in"):
        train(tiny_config("env=pendulum", "agent.gamma=2.0"), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_cli_rejects_a_bad_override_with_one_line_and_no_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = subprocess.run(
        cli("agent.alpha=abc", f"hydra.run.dir={run_dir}"), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "agent.alpha" in lines[0] and lines[0].startswith("rl-train: error:")
    assert not run_dir.exists()


def test_cli_help_lists_groups_and_cfg_prints_the_composed_config() -> None:
    help_text = subprocess.run(cli("--help"), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120).stdout
    for group in ("agent: anogan, autoencoder, ddpg", "env: ", "halfcheetah", "net: conv1d, mlp", "data: array"):
        assert group in help_text
    printed = subprocess.run(
        cli("--cfg", "job", "net.hidden=48"), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    ).stdout
    assert "hidden: 48" in printed and "name: ddpg" in printed


@pytest.mark.parametrize("norm", list(Norm))
@pytest.mark.parametrize("init", list(Init))
def test_mlp_builder_honours_norm_init_and_activation(norm: Norm, init: Init) -> None:
    cfg = compose_config(
        [f"net.norm={norm.value}", f"net.init={init.value}", "net.hidden=16", "net.depth=3", "net.activation=tanh"]
    )
    net = build_mlp(5, 2, resolve_net_spec(cfg.net))
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(5, 16), (16, 16), (16, 16), (16, 2)]
    norm_types = {Norm.none: (), Norm.layer: (nn.LayerNorm,), Norm.batch: (nn.BatchNorm1d,)}[norm]
    assert sum(isinstance(m, norm_types) for m in net) == (3 if norm_types else 0)
    assert sum(isinstance(m, nn.Tanh) for m in net) == 3
    # BatchNorm cancels a bias before it exactly; LayerNorm does not (it centres across units, not the batch)
    assert [layer.bias is None for layer in linears] == [norm is Norm.batch] * 3 + [False]
    if init is Init.default:
        return
    # every scheme but PyTorch's own starts the output layer small: no saturated tanh, Q-values near zero
    assert linears[-1].weight.abs().max() <= FANIN_FINAL_LAYER_BOUND
    gain = 5 / 3  # tanh's
    expected_bound = {
        Init.fanin_uniform: 1 / 5**0.5,
        Init.he: gain * (3 / 5) ** 0.5,
        Init.xavier: gain * (6 / (5 + 16)) ** 0.5,
    }
    if init in expected_bound:  # uniform schemes: the largest weight is close to the bound, never above it
        bound = expected_bound[init]
        assert 0.8 * bound < float(linears[0].weight.detach().abs().max()) <= bound
    if init is Init.orthogonal:  # rows orthogonal, scaled by the activation's gain
        weight = linears[1].weight.detach()
        torch.testing.assert_close(weight @ weight.T, gain**2 * torch.eye(16), atol=1e-4, rtol=1e-4)
    if init is not Init.fanin_uniform:
        assert all(float(layer.bias.detach().abs().max()) == 0.0 for layer in linears if layer.bias is not None)


def test_he_init_keeps_the_actor_out_of_tanh_saturation(tiny_config) -> None:
    """With the output layer left at He scale, about a quarter of the initial pre-tanh outputs on HalfCheetah
    were beyond |2| (tanh > 0.96): the policy started pinned to its bounds."""
    from tests.conftest import make_agent

    agent = make_agent(tiny_config("env=halfcheetah", "net.init=he", "net.hidden=256"))
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(4096, 17)), dtype=torch.float32)
    with torch.no_grad():
        pre_tanh = agent.actor.body(obs)
    assert float((pre_tanh.abs() > 2).float().mean()) < 0.01


def test_activation_choices_cover_the_schema() -> None:
    from rl_runner.networks.mlp import ACTIVATIONS

    assert set(ACTIVATIONS) == set(Activation)
