"""The config groups found in rl_runner/conf/, shared by the config tests."""

from __future__ import annotations

from rl_runner.config import CONF_DIR

GROUPS = {
    group: sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
    for group in ("agent", "env", "data", "net", "experiment")
}
