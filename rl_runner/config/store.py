"""The schemas and resolvers registered with Hydra, once, before any config is composed.

``rl_runner/schemas.py`` holds the dataclasses; here they go into Hydra's ConfigStore under ``schema/<group>/``
(so that ``rl-train --help`` lists only real choices in the agent/env/data/net groups), with the resolvers the
YAML files use: ``${run_name:}`` for the output directory and ``${sum:...}`` for a run made of phases.
"""

from __future__ import annotations

import re
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from rl_runner.schemas import SCHEMAS, Config


def run_name(*, _root_: Any) -> str:
    """``<agent>_<env id or data file>``, safe as one path component (``ALE/Breakout-v5`` has a slash)."""
    root = _root_
    if OmegaConf.select(root, "env.id") is not None:
        task = str(root.env.id)
    elif OmegaConf.select(root, "data.path", throw_on_missing=False) not in (None, MISSING):
        task = re.sub(r"\.[^.]*$", "", str(root.data.path).rstrip("/").rsplit("/", 1)[-1]) or str(root.data.source)
    else:
        task = str(OmegaConf.select(root, "data.source", default="run"))
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", f"{root.agent.name}_{task}").strip("-")


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=node)
    if not OmegaConf.has_resolver("run_name"):
        OmegaConf.register_new_resolver("run_name", run_name)
    if not OmegaConf.has_resolver("sum"):  # total_steps of a run made of phases (conf/agent/anogan.yaml)
        OmegaConf.register_new_resolver("sum", lambda *values: sum(values))


register_configs()
