"""Configs as flat ``{dotted key: value}`` maps: what TensorBoard's HParams tab, ``run.json`` and a sweep run again
compare. Light on purpose (OmegaConf only): the command line reads saved runs with it before torch is imported."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def flatten_config(cfg: DictConfig) -> dict[str, float | int | str | bool]:
    """Dotted keys with values TensorBoard's HParams tab accepts (lists and nulls become strings)."""
    flat = flatten_container(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    return {key: "None" if value is None else value for key, value in flat.items()}


def flatten_container(node: object, prefix: str = "") -> dict[str, Any]:
    """A nested dict as ``{dotted key: value}``: scalars and None as they are, anything else (a list) as a string."""
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in flatten_container(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node if node is None or isinstance(node, (bool, int, float, str)) else str(node)}
