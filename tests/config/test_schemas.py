"""The schemas (rl_runner/schemas.py): every agent key is a constructor argument and the reverse, and defaults
live in the YAML files, not in the schemas."""

from __future__ import annotations

import dataclasses
import inspect

from rl_runner.agents import agent_class, hyperparameters, runner_owned_keys
from rl_runner.config import compose_config
from tests.config.helpers import GROUPS


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
