"""Faults a user can meet, each one line, a non-zero exit and nothing lost: failed resumes, non-finite
checkpoints, corrupt files, two processes on one run, bad values, full and read-only disks, awkward signals."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rl_runner.checkpoint import latest_checkpoint, list_checkpoints, load_state, non_finite_entries
from rl_runner.config import ConfigError, validate_overrides
from rl_runner.errors import CheckpointError, RunLocked, TrainingDiverged
from rl_runner.logging import read_scalars
from rl_runner.runners.off_policy import OffPolicyLoop
from rl_runner.runtime import RunLock
from rl_runner.train import train
from tests.conftest import REPO_ROOT, SMALL_PENDULUM, cli, interrupt_at, run_cli, run_eval

SMALL = [*SMALL_PENDULUM, "eval.every=0", "eval.episodes=1", "log.every=50"]


def one_error_line(result: subprocess.CompletedProcess, program: str = "rl-train") -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error: "), result.stderr
    return lines[0]


def small_run(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    result = run_cli(*SMALL, "total_steps=200", "checkpoint.every=100", f"hydra.run.dir={run_dir}", *extra)
    assert result.returncode == 0, result.stderr
    return result


# ------------------------------------------------------------------------------------------- resumes
@pytest.mark.slow
def test_a_failed_resume_leaves_the_run_resumable(tmp_path: Path) -> None:
    """A resume whose overrides do not fit the checkpoint used to write them into .hydra/ first, so every
    later plain resume and rl-eval failed the same way."""
    run_dir = tmp_path / "run"
    small_run(run_dir)
    saved = {
        name: (run_dir / name).read_bytes() for name in (".hydra/overrides.yaml", ".hydra/config.yaml", "run.json")
    }

    failed = run_cli(f"resume={run_dir}", "net.hidden=64", "total_steps=300")
    assert failed.returncode == 1
    assert "does not fit this run's actor" in one_error_line(failed)
    assert {name: (run_dir / name).read_bytes() for name in saved} == saved

    resumed = run_cli(f"resume={run_dir}", "total_steps=300")
    assert resumed.returncode == 0, resumed.stderr
    assert "total_steps=300" in (run_dir / ".hydra" / "overrides.yaml").read_text()  # written once it loaded
    assert "total_steps: 300" in (run_dir / ".hydra" / "config.yaml").read_text()
    evaluated = run_eval(str(run_dir), "episodes=1")
    assert evaluated.returncode == 0, evaluated.stderr


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


# ------------------------------------------------------------------------------------------- non-finite state
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


def test_rl_eval_refuses_a_checkpoint_with_non_finite_parameters(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    small_run(run_dir)
    actor_file = latest_checkpoint(run_dir / "checkpoints") / "actor.pt"
    actor = torch.load(actor_file)
    actor["body.0.weight"][0, 0] = float("nan")
    torch.save(actor, actor_file)
    result = run_eval(str(run_dir), "episodes=1")
    assert result.returncode == 2
    assert "actor.pt holds 1 non-finite value" in one_error_line(result, "rl-eval")


def test_rl_eval_refuses_a_corrupt_checkpoint_and_zero_episodes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    small_run(run_dir)
    for arguments, words in (
        (["episodes=0"], "episodes=0: must be at least 1"),
        (["episodes=two"], "episodes='two' is not an integer"),
        (["checkpoint=step_000000000100"], "critic.pt is corrupt"),
    ):
        if "checkpoint=step_000000000100" in arguments:
            (run_dir / "checkpoints" / "step_000000000100" / "critic.pt").write_bytes(b"\x00" * 10)
        result = run_eval(str(run_dir), *arguments)
        assert result.returncode == 2 and words in one_error_line(result, "rl-eval")


# ------------------------------------------------------------------------------------------- two processes
def test_a_second_process_on_a_run_directory_is_refused_and_a_dead_holder_blocks_nothing(
    tiny_config, tmp_path: Path
) -> None:
    train(tiny_config("env=pendulum", "total_steps=150", "eval.every=0"), run_dir=tmp_path)
    resume = tiny_config("env=pendulum", "total_steps=300", f"resume={tmp_path}")
    before = (tmp_path / "run.json").read_bytes()
    with RunLock(tmp_path):
        with pytest.raises(RunLocked, match=rf"{tmp_path} is in use by process {os.getpid()} on "):
            train(resume, run_dir=tmp_path)
    assert (tmp_path / "run.json").read_bytes() == before
    # a holder killed outright: the operating system drops its lock
    hold = f"from pathlib import Path; from rl_runner.runtime import RunLock; lock = RunLock(Path({str(tmp_path)!r}))"
    holder = subprocess.Popen([sys.executable, "-c", f"{hold}.__enter__(); import time; time.sleep(60)"], cwd=REPO_ROOT)
    deadline = time.time() + 30
    while time.time() < deadline and str(holder.pid) not in (tmp_path / ".lock").read_text():
        time.sleep(0.1)
    with pytest.raises(RunLocked, match=f"process {holder.pid}"):
        train(resume, run_dir=tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert train(resume, run_dir=tmp_path)["step"] == 300


@pytest.mark.slow
def test_cli_refuses_a_second_process_with_one_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    small_run(run_dir)
    first = subprocess.Popen(
        cli(f"resume={run_dir}", "total_steps=100000000"),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline and str(first.pid) not in (run_dir / ".lock").read_text():
            time.sleep(0.1)
        second = run_cli(f"resume={run_dir}", "total_steps=400")
        assert second.returncode == 1
        assert f"is in use by process {first.pid}" in one_error_line(second)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert run_cli(f"resume={run_dir}", "total_steps=400").returncode == 0


# ------------------------------------------------------------------------------------------- values
@pytest.mark.parametrize(
    "override",
    [
        "agent.gamma=1.5",
        "agent.tau=2",
        "total_steps=-1",
        "agent.updates_per_step=-1",
        "log.every=0",
        "eval.episodes=-1",
        "checkpoint.keep=-1",
        "checkpoint.every=-5",
        "agent.batch_size=0",
        "agent.batch_size=-5",
        "env.num_envs=0",
        "agent.buffer_size=0",
        "agent.alpha=-1",
        "agent.noise_scale=-0.1",
        "env.max_episode_steps=0",
        "agent.updates_per_step=inf",
        "agent.alpha=inf",
        "agent.ou_theta=150",
    ],
)
def test_out_of_range_values_are_one_line_config_errors(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key}=\S+ must be "):
        validate_overrides([override])


def test_cli_value_error_exits_2_without_a_run_directory_and_useless_settings_warn(tmp_path: Path) -> None:
    result = run_cli("agent.batch_size=-5", f"hydra.run.dir={tmp_path / 'bad'}")
    assert result.returncode == 2 and "agent.batch_size=-5 must be positive" in one_error_line(result)
    assert not (tmp_path / "bad").exists()
    assert validate_overrides(["total_steps=1000", "agent.learning_starts=5000"]) == [
        "total_steps=1000 is not above agent.learning_starts=5000: the agent acts at random and never learns"
    ]


# ------------------------------------------------------------------------------------------- disks
@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MB tmpfs (needs root, as CI has); skips elsewhere."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)]).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)])


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(small_disk: Path) -> None:
    run_dir = small_disk / "run"
    args = [*SMALL, "total_steps=100000000", "checkpoint.every=100", f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(cli(*args), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and latest_checkpoint(run_dir / "checkpoints") is None:
        time.sleep(0.05)
    with open(small_disk / "filler", "wb") as filler:  # fill what is left
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "No space left on device" in lines[0] and lines[0].startswith("rl-train: error:"), stderr
    last_good = latest_checkpoint(run_dir / "checkpoints")
    assert f"cannot write checkpoint {run_dir / 'checkpoints'}" in lines[0]
    assert lines[0].endswith(f"the latest good checkpoint is {last_good}")
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
    for name in ("actor", "critic", "progress"):
        load_state(last_good, name)


@pytest.mark.slow
def test_a_read_only_run_directory_is_one_line(small_disk: Path) -> None:
    run_dir = small_disk / "run"
    small_run(run_dir, "checkpoint.every=0")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    resumed = run_cli(f"resume={run_dir}", "total_steps=400")
    assert resumed.returncode == 1
    line = one_error_line(resumed)
    assert str(run_dir) in line and "Read-only file system" in line
    fresh = run_cli(*SMALL, "total_steps=100", f"hydra.run.dir={small_disk / 'new'}")
    assert fresh.returncode == 1 and "Read-only file system" in one_error_line(fresh)


# ------------------------------------------------------------------------------------------- signals
def test_a_second_ctrl_c_during_a_checkpoint_write_waits_for_the_write(
    tiny_config, tmp_path: Path, monkeypatch
) -> None:
    """Two Ctrl-Cs while a checkpoint is written: the first asks for a stop, the second stops at once, but only
    once the checkpoint is complete (it used to leave a .tmp-step_* directory and a traceback)."""
    import rl_runner.checkpoint as checkpoint_module

    original_save = torch.save
    calls = {"n": 0}

    def save_with_two_interrupts(state: object, file: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # mid-way through the checkpoint's files
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        original_save(state, file)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_with_two_interrupts)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config("env=pendulum", "total_steps=1000", "eval.every=0"), run_dir=tmp_path)
    checkpoint = latest_checkpoint(tmp_path / "checkpoints")
    assert checkpoint.name == "step_000000000150" and not list((tmp_path / "checkpoints").glob(".tmp-*"))
    assert {p.name for p in checkpoint.iterdir()} >= {"actor.pt", "critic.pt", "progress.pt", "exploration_noise.pt"}
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "interrupted"


def test_cli_turns_a_second_ctrl_c_into_one_line(monkeypatch, capsys) -> None:
    import rl_runner.train as train_module

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_hydra_main", interrupted)
    monkeypatch.setattr(train_module, "validate_overrides", lambda overrides: [])
    with pytest.raises(SystemExit) as exit_info:
        train_module.main(["env=pendulum"])
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "rl-train: error: interrupted\n"


@pytest.mark.parametrize("command", [["-m", "rl_runner.train"], ["-m", "rl_runner.evaluate"], ["rl-train"]])
def test_ctrl_c_while_starting_is_one_line(command: list[str]) -> None:
    if command[0] == "rl-train":
        command = [str(Path(sys.executable).parent / "rl-train")]
        if not Path(command[0]).exists():
            pytest.skip("rl-train is not installed in this environment")
    else:
        command = [sys.executable, *command]
    process = subprocess.Popen(
        [*command, "--help"], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(0.4)  # inside the imports of torch, gymnasium and hydra
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip() in ("rl-train: interrupted", "rl-eval: interrupted"), stderr


# ------------------------------------------------------------------------------------------- numerics
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


def test_warm_up_actions_do_not_replay_the_env_reset_noise(tiny_config) -> None:
    """default_rng(seed) and env.reset(seed=seed) are the same PCG64 stream: Pendulum's first warm-up torque was
    an exact function of env 0's initial angle."""
    import gymnasium as gym

    from rl_runner.clock import Clock
    from rl_runner.envs.make import make_vector_env
    from rl_runner.runners.off_policy import random_actions
    from tests.conftest import make_agent

    for seed in range(5):
        cfg = tiny_config("env=pendulum", f"seed={seed}")
        envs = make_vector_env(cfg.env)
        loop = OffPolicyLoop(cfg, make_agent(cfg), envs, gym.make("Pendulum-v1"), Clock(horizon=300))
        loop.begin(None)
        theta = float(envs.envs[0].unwrapped.state[0])
        torque = float(random_actions(envs.single_action_space, loop.rng, 1)[0, 0])
        assert not np.isclose((torque + 2) / 4, (theta + np.pi) / (2 * np.pi))
        reused = float(random_actions(envs.single_action_space, np.random.default_rng(seed), 1)[0, 0])
        assert np.isclose((reused + 2) / 4, (theta + np.pi) / (2 * np.pi))  # what the old stream gave
        envs.close()


def test_normalised_networks_keep_their_statistics_through_training(tiny_config, tmp_path: Path) -> None:
    from rl_runner.checkpoint import load_into
    from tests.conftest import make_agent

    cfg = tiny_config("env=pendulum", "net.norm=batch", "total_steps=250", "checkpoint.every=0", "eval.every=0")
    train(cfg, run_dir=tmp_path)
    agent = make_agent(cfg)
    load_into(latest_checkpoint(tmp_path / "checkpoints"), agent.state_groups(), map_location="cpu")
    norms = [m for m in agent.critic.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    # the critic runs in training mode twice per update (its own loss, the actor's loss): 151 updates
    assert len(norms) == 2 and all(int(m.num_batches_tracked) == 2 * 151 for m in norms)
    assert all(float(m.running_mean.abs().sum()) > 0 for m in norms)
    linears = [layer for layer in agent.critic.body if isinstance(layer, torch.nn.Linear)]
    assert [layer.bias is None for layer in linears] == [True, True, False]  # no bias before a BatchNorm


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


def test_the_last_checkpoint_is_written_once_and_an_interrupted_replace_is_recovered(
    tiny_config, tmp_path: Path, monkeypatch
) -> None:
    from rl_runner.checkpoint import save_checkpoint
    from rl_runner.runners.base import RunSkeleton

    saves = []
    original = RunSkeleton.save
    monkeypatch.setattr(RunSkeleton, "save", lambda self: saves.append(self.clock.step) or original(self))
    train(tiny_config("env=pendulum", "total_steps=300", "checkpoint.every=150"), run_dir=tmp_path / "run")
    assert saves == [150, 300]
    # a kill between moving the old step_300 aside and moving its replacement in
    root = tmp_path / "run" / "checkpoints"
    (root / "step_000000000300").rename(root / ".tmp-replaced-step_000000000300")
    assert latest_checkpoint(root).name == ".tmp-replaced-step_000000000300"  # still found, still loadable
    save_checkpoint(root, 400, {"progress": {"step": 400}}, keep=3)
    assert [c.name for c in list_checkpoints(root)] == [f"step_{s:012d}" for s in (150, 300, 400)]


def test_a_resume_with_more_envs_and_ou_noise_starts_new_episodes(tiny_config, tmp_path: Path) -> None:
    train(tiny_config("env=pendulum", "agent.noise=ou", "total_steps=150", "eval.every=0"), run_dir=tmp_path)
    more = tiny_config("env=pendulum", "agent.noise=ou", "env.num_envs=4", "total_steps=310", f"resume={tmp_path}")
    assert train(more, run_dir=tmp_path)["step"] == 310
    assert load_state(latest_checkpoint(tmp_path / "checkpoints"), "exploration_noise")["state"].shape == (4, 1)
