"""The resolvers registered with Hydra (rl_runner/config/store.py): run directory names are one path component."""

from __future__ import annotations

from pathlib import Path

from rl_runner.config import CONF_DIR


def test_run_directory_names_are_one_path_component() -> None:
    def run_dir(*overrides: str) -> str:
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
        return Path(cfg.hydra.run.dir).parent.name

    assert run_dir() == "ddpg_HalfCheetah-v5"
    assert run_dir("env.id=ALE/Breakout-v5") == "ddpg_ALE-Breakout-v5"
    assert run_dir("agent=autoencoder", "data.path=/data/pump 3/readings.csv") == "autoencoder_readings"
