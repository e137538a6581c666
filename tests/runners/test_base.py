"""What the run skeleton (rl_runner/runners/base.py) promises every agent: logged tags and named checkpoints,
resumes (refused, corrupt or with new learning rates), run.json, the sweeper's objective and divergence stops."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

from rl_runner.agents.ddpg import DDPG
from rl_runner.checkpoint import PROGRESS_FORMAT, latest_checkpoint, list_checkpoints, load_state, non_finite_entries
from rl_runner.errors import CheckpointError, TrainingDiverged
from rl_runner.logging import read_scalars
from rl_runner.train import _hydra_main
from rl_runner.training import train
from tests.conftest import interrupt_at, make_agent

AGENT_FILES = {
    "actor.pt",
    "critic.pt",
    "target_actor.pt",
    "target_critic.pt",
    "actor_optimizer.pt",
    "critic_optimizer.pt",
    "exploration_noise.pt",
    "progress.pt",
}


def test_run_writes_tensorboard_tags_and_named_checkpoint_files(tiny_config, tmp_path: Path) -> None:
    summary = train(tiny_config("env=halfcheetah", "checkpoint.keep=2", "env.max_episode_steps=100"), run_dir=tmp_path)
    assert summary["step"] == 300 and not summary["interrupted"]
    scalars = read_scalars(tmp_path / "tb")
    for tag in (
        "train/episode_return",
        "train/episode_length",
        "loss/critic",
        "loss/actor",
        "q/mean",
        "charts/sps",
        "eval/return_mean",
    ):
        assert tag in scalars and scalars[tag], tag
    assert {s for s, _ in scalars["eval/return_mean"]} == {150, 300}
    checkpoints = list_checkpoints(tmp_path / "checkpoints")
    assert [c.name for c in checkpoints] == ["step_000000000150", "step_000000000300"]
    assert {p.name for p in checkpoints[-1].iterdir()} == AGENT_FILES
    progress = load_state(checkpoints[-1], "progress")
    assert progress["clock"]["step"] == 300 and set(progress["rng"]) >= {"python", "numpy", "torch"}
    assert progress["format"] == PROGRESS_FORMAT and progress["clock"]["horizon"] == 300
    assert len(progress["loop"]["env_state"]) == 1


def test_hparams_are_logged(tiny_config, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_config("env=pendulum", "total_steps=200", "eval.every=0", "checkpoint.every=0"), run_dir=tmp_path)
    accumulator = EventAccumulator(str(tmp_path / "tb"))
    accumulator.Reload()
    assert accumulator.PluginTagToContent("hparams")
    assert "final/eval/return_mean" in accumulator.Tags()["scalars"]


def test_resume_without_a_checkpoint_is_a_clear_error(tiny_config, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(tiny_config("env=pendulum", f"resume={tmp_path}"), run_dir=tmp_path)


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    tiny_config, tmp_path: Path, monkeypatch
) -> None:
    original_update = DDPG.update
    calls = {"n": 0}

    def update_that_diverges(self: DDPG) -> dict:
        calls["n"] += 1
        metrics = original_update(self)
        if calls["n"] > 120:
            metrics["loss/critic"] = metrics["loss/critic"] * float("nan")
        return metrics

    monkeypatch.setattr(DDPG, "update", update_that_diverges)
    with pytest.raises(TrainingDiverged, match=r"loss/critic=nan.*step_000000000150"):
        train(tiny_config("env=pendulum", "total_steps=1000", "eval.every=0"), run_dir=tmp_path)
    assert [c.name for c in list_checkpoints(tmp_path / "checkpoints")] == ["step_000000000150"]
    load_state(latest_checkpoint(tmp_path / "checkpoints"), "actor")


def test_a_checkpoint_of_an_older_format_is_refused_before_anything_loads(tiny_config, tmp_path: Path) -> None:
    train(tiny_config("env=pendulum", "total_steps=150", "eval.every=0"), run_dir=tmp_path)
    checkpoint = latest_checkpoint(tmp_path / "checkpoints")
    progress = load_state(checkpoint, "progress")
    old = {  # the layout of format 1, written by the DDPG-only runner
        "counters": {"step": 150, **progress["counters"]},
        "rng": progress["rng"],
        **{k: v for k, v in progress["loop"].items() if k in ("warmup_rng", "env_state", "obs")},
    }
    torch.save(old, checkpoint / "progress.pt")
    record_before = (tmp_path / "run.json").read_bytes()
    with pytest.raises(CheckpointError, match=r"progress.pt has progress format 1, this rl_runner reads format 2"):
        train(tiny_config("env=pendulum", "total_steps=300", f"resume={tmp_path}"), run_dir=tmp_path)
    assert (tmp_path / "run.json").read_bytes() == record_before  # a failed resume changes nothing


def test_run_json_records_a_run_that_fails_while_being_set_up(tiny_config, tmp_path: Path) -> None:
    with pytest.raises(OSError, match="the simulator crashed on start"):  # past the checks, which make no reset
        train(tiny_config("env=pendulum", "env.id=tests.envs.broken:CrashesOnReset"), run_dir=tmp_path)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "failed" and "the simulator crashed on start" in record["error"]
    assert record["attempts"][-1]["status"] == "failed"


def test_run_json_of_a_failed_resume_is_left_as_it_was(tiny_config, tmp_path: Path) -> None:
    train(tiny_config("env=pendulum", "total_steps=150", "eval.every=0"), run_dir=tmp_path)
    before = (tmp_path / "run.json").read_bytes()
    with pytest.raises(CheckpointError, match="does not fit"):
        train(tiny_config("env=pendulum", "total_steps=300", "net.hidden=64", f"resume={tmp_path}"), run_dir=tmp_path)
    assert (tmp_path / "run.json").read_bytes() == before


def test_the_task_function_returns_the_agents_objective(tiny_config, tiny_data_config, tmp_path: Path) -> None:
    """What a Hydra sweeper (Optuna) optimises: agent.objective.metric of the finished run."""
    for name, make, metric in (
        ("env", lambda *o: tiny_config("env=pendulum", "checkpoint.save_replay=true", *o), "eval/return_mean"),
        ("data", lambda *o: tiny_data_config("agent.lr_schedule=constant", *o), "eval/loss"),
    ):
        run_dir = tmp_path / name
        first = train(make("total_steps=150"), run_dir=run_dir)
        time.sleep(1.1)
        value = _hydra_main(make("total_steps=200", f"resume={run_dir}"))  # a composed config passes straight in
        record = json.loads((run_dir / "run.json").read_text())
        assert isinstance(value, float) and value == record["objective"]["value"] == record["summary"][metric]
        assert record["objective"]["metric"] == metric and value != first[metric]
        assert [a["status"] for a in record["attempts"]] == ["finished", "finished"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_keeps_networks_optimizers_and_replay_on_the_gpu(tiny_config, tmp_path: Path) -> None:
    from rl_runner.checkpoint import latest_checkpoint, load_into

    cfg = tiny_config("env=halfcheetah", "device=cuda", "env.max_episode_steps=100")
    summary = train(cfg, run_dir=tmp_path)
    assert summary["step"] == 300
    agent = make_agent(cfg, device="cuda")
    load_into(latest_checkpoint(tmp_path / "checkpoints"), agent.state_groups(), map_location="cuda")
    tensors = [
        *agent.actor.state_dict().values(),
        *agent.critic.state_dict().values(),
        *agent.target_actor.state_dict().values(),
        *agent.target_critic.state_dict().values(),
        agent.replay.storage,
    ]
    for optimizer in (agent.actor_optimizer, agent.critic_optimizer):
        tensors += [t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t) and t.dim()]
    assert tensors and all(t.is_cuda for t in tensors)
    assert agent.update()["loss/critic"].is_cuda
    # a resume on the GPU: RNG states and counters come back on the CPU, the state groups on the GPU
    time.sleep(1.1)
    resumed = tiny_config(
        "env=halfcheetah", "device=cuda", "env.max_episode_steps=100", "total_steps=400", f"resume={tmp_path}"
    )
    assert train(resumed, run_dir=tmp_path)["step"] == 400


def test_a_corrupt_latest_checkpoint_falls_back_to_the_newest_readable_one(tiny_config, tmp_path: Path, caplog) -> None:
    train(tiny_config("env=pendulum", "total_steps=300", "eval.every=0"), run_dir=tmp_path)
    newest = latest_checkpoint(tmp_path / "checkpoints")
    actor = newest / "actor.pt"
    actor.write_bytes(actor.read_bytes()[:100])  # truncated, as by a full disk outside this program
    summary = train(tiny_config("env=pendulum", "total_steps=450", f"resume={tmp_path}"), run_dir=tmp_path)
    assert summary["step"] == 450
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert f"{actor} is corrupt" in warnings and "resuming from" in warnings and "step_000000000150" in warnings
    assert "does not fit" not in warnings
    # the skipped checkpoint is kept for a look, out of the way of "latest"
    assert (tmp_path / "checkpoints" / f".corrupt-{newest.name}" / "actor.pt").is_file()
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step_000000000450"


def test_no_readable_checkpoint_is_one_clear_error(tiny_config, tmp_path: Path) -> None:
    train(tiny_config("env=pendulum", "total_steps=150", "eval.every=0"), run_dir=tmp_path)
    (latest_checkpoint(tmp_path / "checkpoints") / "critic.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"no readable checkpoint under .*critic.pt is corrupt"):
        train(tiny_config("env=pendulum", "total_steps=300", f"resume={tmp_path}"), run_dir=tmp_path)


def test_a_checkpoint_with_non_finite_parameters_is_never_written(tiny_config, tmp_path: Path, monkeypatch) -> None:
    """An actor weight that overflows in the update just before a checkpoint, while every logged loss is still
    finite: the run used to save it and later name it the last good checkpoint."""
    from rl_runner.agents.ddpg import DDPG

    original = DDPG.update

    def update_that_overflows(self: DDPG) -> dict:
        metrics = original(self)
        if self.clock.step == 300:  # the last update before the checkpoint at step 300
            with torch.no_grad():
                self.actor.body[0].weight[0, 0] = float("inf")
        return metrics

    monkeypatch.setattr(DDPG, "update", update_that_overflows)
    with pytest.raises(
        TrainingDiverged, match=r"at step 300: non-finite values in actor.pt \(1 value\).*step_000000000150"
    ):
        train(tiny_config("env=pendulum", "total_steps=1000", "eval.every=0"), run_dir=tmp_path)
    assert [c.name for c in list_checkpoints(tmp_path / "checkpoints")] == ["step_000000000150"]
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "diverged"


def test_a_huge_learning_rate_diverges_without_a_non_finite_checkpoint(tiny_config, tmp_path: Path) -> None:
    """The first update (at step 100) overflows the actor; the checkpoint due at that very step is refused and the
    one before it is named."""
    cfg = tiny_config("env=pendulum", "agent.alpha=1e39", "total_steps=1000", "eval.every=0", "checkpoint.every=50")
    with pytest.raises(TrainingDiverged, match=r"at step 100: non-finite values in actor.pt.*step_000000000050$"):
        train(cfg, run_dir=tmp_path)
    checkpoints = list_checkpoints(tmp_path / "checkpoints")
    assert [c.name for c in checkpoints] == ["step_000000000050"]
    states = {name: load_state(checkpoints[0], name) for name in ("actor", "critic", "target_actor", "target_critic")}
    assert not non_finite_entries(states)


def test_a_resumed_run_logs_the_same_curve_as_an_uninterrupted_one(tiny_config, tmp_path: Path, monkeypatch) -> None:
    """A signal at an arbitrary step: the checkpoint keeps the unfinished log interval, so the resumed run's
    TensorBoard points are the uninterrupted run's, none added at the stop and none split."""
    overrides = [
        "env=pendulum",
        "total_steps=400",
        "checkpoint.every=0",
        "checkpoint.save_replay=true",
        "eval.every=100",
    ]
    train(tiny_config(*overrides), run_dir=tmp_path / "straight")
    interrupt_at(monkeypatch, 230)
    assert train(tiny_config(*overrides), run_dir=tmp_path / "resumed")["interrupted"]
    monkeypatch.undo()
    time.sleep(1.1)
    train(tiny_config(*overrides, f"resume={tmp_path / 'resumed'}"), run_dir=tmp_path / "resumed")
    straight, resumed = read_scalars(tmp_path / "straight" / "tb"), read_scalars(tmp_path / "resumed" / "tb")
    assert set(straight) == set(resumed)
    for tag in straight:
        if tag == "charts/sps":
            assert [s for s, _ in straight[tag]] == [s for s, _ in resumed[tag]]
            assert all(math.isfinite(v) and v > 0 for _, v in resumed[tag])
        elif not tag.startswith("final/"):
            assert straight[tag] == resumed[tag], tag


def test_a_resume_applies_the_configured_learning_rates(tiny_config, tmp_path: Path) -> None:
    """Optimizer.load_state_dict restores the saved learning rate: a resume with agent.alpha=... used to keep
    training at the old one (while the saved config showed the new one)."""
    train(tiny_config("env=pendulum", "total_steps=150", "eval.every=0", "agent.alpha=1e-3"), run_dir=tmp_path)
    time.sleep(1.1)
    resumed = tiny_config(
        "env=pendulum", "total_steps=300", "agent.alpha=1e-5", "agent.beta=2e-5", f"resume={tmp_path}"
    )
    train(resumed, run_dir=tmp_path)
    checkpoint = latest_checkpoint(tmp_path / "checkpoints")
    assert load_state(checkpoint, "actor_optimizer")["param_groups"][0]["lr"] == 1e-5
    assert load_state(checkpoint, "critic_optimizer")["param_groups"][0]["lr"] == 2e-5
