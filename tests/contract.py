"""The checks of the agent contract (tests/test_contract.py), for any runner: a run stopped by SIGTERM and resumed
ends as one never interrupted, and the trained agent loads for rl-eval and the Python API alike."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rl_runner.api import load_agent, load_policy
from rl_runner.checkpoint import latest_checkpoint, load_state
from rl_runner.config import compose_config
from rl_runner.evaluate import evaluate_run
from rl_runner.logging import read_scalars
from rl_runner.training import train
from tests.conftest import assert_same_state, interrupt_at

SPEED_TAGS = ("sps", "per_second")  # wall-clock speeds: the only scalars allowed to differ
TIME_COUNTERS = ("train_seconds", "interval_seconds")  # progress.pt's wall-clock counters


def is_speed(tag: str) -> bool:
    return any(speed in tag for speed in SPEED_TAGS)


def make_run(run_dir: Path, overrides: list[str], monkeypatch: pytest.MonkeyPatch, stop_at: int | None = None) -> dict:
    """Train in-process, as ``rl-train`` would with these overrides (its ``.hydra/overrides.yaml`` included, so
    that rl-eval and the API can compose the run's config again); with ``stop_at``, SIGTERM after that step."""
    with monkeypatch.context() as patch:
        if stop_at is not None:
            interrupt_at(patch, stop_at)
        summary = train(compose_config(overrides), run_dir=run_dir)
    (run_dir / ".hydra").mkdir(exist_ok=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return summary


def assert_same_checkpoint(a: Path, b: Path) -> None:
    """Every file of two checkpoints equal to the bit, but for the wall-clock counters in progress.pt."""
    names = sorted(path.stem for path in a.glob("*.pt"))
    assert names == sorted(path.stem for path in b.glob("*.pt"))
    for name in names:
        left, right = load_state(a, name), load_state(b, name)
        if name == "progress":
            for counters in (left["counters"], right["counters"]):
                for counter in TIME_COUNTERS:
                    counters.pop(counter)
                counters["last_eval"] = {k: v for k, v in counters["last_eval"].items() if not is_speed(k)}
        assert_same_state(left, right, name)


def assert_resume_is_exact(
    straight: Path, resumed: Path, overrides: list[str], stop_at: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, dict, dict]:
    """Train ``straight`` through; train ``resumed`` until SIGTERM after ``stop_at``, then resume it to the end: the
    same step and update counts, every TensorBoard scalar but speeds, and every file of the final checkpoint.
    Returns the checkpoint written at the stop and both summaries (resumed, straight)."""
    stopped = make_run(resumed, overrides, monkeypatch, stop_at=stop_at)
    assert stopped["interrupted"] and stopped["step"] == stop_at
    stopped_checkpoint, stopped_time = latest_checkpoint(resumed / "checkpoints"), time.time()
    expected = make_run(straight, overrides, monkeypatch)
    time.sleep(max(0.0, 1.1 - (time.time() - stopped_time)))  # TensorBoard orders event files by creation second
    summary = make_run(resumed, [*overrides, f"resume={resumed}"], monkeypatch)
    assert not summary["interrupted"]
    assert (summary["step"], summary["updates"]) == (expected["step"], expected["updates"])
    a, b = read_scalars(straight / "tb"), read_scalars(resumed / "tb")
    assert set(a) == set(b)
    for tag in a:
        if not is_speed(tag):
            assert a[tag] == b[tag], tag
    assert_same_checkpoint(latest_checkpoint(straight / "checkpoints"), latest_checkpoint(resumed / "checkpoints"))
    return stopped_checkpoint, summary, expected


def assert_loads_alike(straight: Path, resumed: Path) -> None:
    """rl-eval and the Python API load the resumed run as they load the uninterrupted one."""
    evaluated = [evaluate_run(run, {"device": "cpu"}) for run in (straight, resumed)]
    for result in evaluated:
        result.pop("checkpoint"), result.pop("report"), result.pop("scores", None)
    assert evaluated[0] == evaluated[1]
    trained = [load_agent(run) for run in (straight, resumed)]
    if trained[0].kind == "env":
        policies = [load_policy(run) for run in (straight, resumed)]
        space = policies[0].observation_space
        space.seed(0)
        observations = np.stack([space.sample() for _ in range(8)])
        np.testing.assert_array_equal(policies[0].act(observations), policies[1].act(observations))
    else:
        samples = torch.as_tensor(trained[0].data.val.values[:16])
        assert torch.equal(trained[0].agent.score(samples), trained[1].agent.score(samples))
        assert trained[0].threshold == trained[1].threshold is not None
