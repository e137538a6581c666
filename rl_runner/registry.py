"""Name -> "module:attribute" tables resolved on first use, so the CLI imports only what a run needs."""

from __future__ import annotations

import importlib
from typing import Any


def resolve_entry(table: dict[str, str], name: str, what: str) -> Any:
    if name not in table:
        raise ValueError(f"unknown {what}={name!r}; known: {', '.join(sorted(table))}")
    module_name, attribute = table[name].split(":")
    return getattr(importlib.import_module(module_name), attribute)
