"""Where the config groups live: this project's ``conf/`` (packaged with the code) and the option files in it, read
as plain YAML where a check needs another option's values (which conv torso would fit an env's images)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"  # a link to the top-level conf/ in the source tree


def option_values(group: str, name: str) -> DictConfig | None:
    """The values an option file of this project sets itself (its defaults list and interpolations not applied),
    or None when there is no such file."""
    path = CONF_DIR / group / f"{name}.yaml"
    return OmegaConf.load(path) if path.is_file() else None
