"""Sweeps (rl_runner/sweep.py): real multiruns of the CLI (joblib, submitit_local, Optuna), failures that do not
end a sweep, sweeps run again, short job names, per-job threads and GPUs, best checkpoints and early stops."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hydra import initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rl_runner.checkpoint import load_state
from rl_runner.config import CONF_DIR, ConfigError, hydra_settings, validate_overrides
from rl_runner.config.compose import compose_with_search_space
from rl_runner.logging import read_scalars
from rl_runner.sweep import (
    SweepOutcome,
    constant_keys,
    device_for_job,
    handles_signal,
    job_name,
    parallel_jobs,
    stop_parallel_jobs,
    sweep_outcome,
    threads_per_job,
    worker_count_override,
)
from rl_runner.training import train
from tests.conftest import REPO_ROOT, SMALL_PENDULUM, cli, run_eval

# Pendulum jobs of a few hundred steps: every sweep below takes seconds per job
SWEEP_JOB = [
    *SMALL_PENDULUM,
    "total_steps=150",
    "log.every=50",
    "eval.every=75",
    "eval.episodes=1",
    "checkpoint.every=75",
]


def run_sweep(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def hparams_sessions(tb_dir: Path) -> list[str]:
    accumulator = EventAccumulator(str(tb_dir))
    accumulator.Reload()
    return [tag for tag in accumulator.summary_metadata if tag.startswith("_hparams_/session_start")]


# ------------------------------------------------------------------------------------------- real multiruns
def test_parallel_sweep_has_short_job_names_events_hparams_and_plots(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_sweep(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "seed=0,1",
        "agent.tau=0.005,0.01",
        *SWEEP_JOB,
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr
    runs = sorted((p for p in sweep_dir.iterdir() if p.is_dir()), key=lambda p: p.name)
    names = ["0_seed=0_tau=0.005", "1_seed=0_tau=0.01", "2_seed=1_tau=0.005", "3_seed=1_tau=0.01"]
    assert [run.name for run in runs] == names
    assert "sweep" in result.stdout and "4 runs: 4 finished" in result.stdout
    for run in runs:
        assert record(run)["status"] == "finished"
        assert "eval/return_mean" in read_scalars(run / "tb")
        assert hparams_sessions(run / "tb"), f"{run.name} has no HParams session"
        # two jobs share the 2 cores: one torch thread each
        assert "device cpu, 1 threads" in (run / "train.log").read_text()

    plot = subprocess.run(
        [sys.executable, "-m", "rl_runner.plot", str(sweep_dir), "--out", str(tmp_path / "plots")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plot.returncode == 0, plot.stderr
    assert (tmp_path / "plots" / "eval_return_mean.png").stat().st_size > 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "plots" / "results.csv").read_text())))
    final = {run.name: read_scalars(run / "tb")["eval/return_mean"][-1][1] for run in runs}
    finals = {tau: (final[a] + final[b]) / 2 for tau, a, b in (("0.005", *names[::2]), ("0.01", *names[1::2]))}
    assert sorted(row["group"] for row in rows) == ["tau=0.005", "tau=0.01"]
    for row in rows:
        assert float(row["final_mean"]) == pytest.approx(finals[row["group"].split("=")[1]], rel=1e-9)


def test_a_failing_job_is_recorded_the_sweep_goes_on_and_running_it_again_skips_finished_jobs(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_sweep(
        "-m", "env.id=tests.envs.broken:CrashesOnReset,Pendulum-v1", *SWEEP_JOB, f"hydra.sweep.dir={sweep_dir}"
    )
    assert result.returncode == 1
    failed, finished = sweep_dir / "0_id=tests.envs.broken-CrashesOnReset", sweep_dir / "1_id=Pendulum-v1"
    assert record(failed)["status"] == "failed" and "the simulator crashed on start" in record(failed)["error"]
    assert record(finished)["status"] == "finished"
    assert "rl-train: job 0_id=tests.envs.broken-CrashesOnReset failed: the simulator crashed" in result.stderr
    summary = [line for line in result.stdout.splitlines() if line.startswith("rl-train: sweep")]
    assert (
        len(summary) == 1
        and "2 runs: 1 finished, 1 failed" in summary[0]
        and "0_id=tests.envs.broken-CrashesOnReset" in summary[0]
    )

    saved = (finished / ".hydra" / "overrides.yaml").read_text()
    again = run_sweep(f"resume={sweep_dir}", "log.every=25")  # run again, with a setting that changes nothing learned
    assert again.returncode == 1
    assert "job 1_id=Pendulum-v1 skipped (finished before)" in again.stdout
    assert len(record(finished)["attempts"]) == 1  # not run again
    assert (finished / ".hydra" / "overrides.yaml").read_text() == saved  # nor its saved config rewritten
    assert len(record(failed)["attempts"]) == 2  # tried again
    assert "2 runs: 1 finished, 1 failed" in again.stdout

    # the same command with another shared value: the same job names, other settings; refused, never continued
    other = run_sweep(
        "-m",
        "env.id=tests.envs.broken:CrashesOnReset,Pendulum-v1",
        *SWEEP_JOB,
        "agent.tau=0.5",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert other.returncode == 1
    assert "job 1_id=Pendulum-v1 failed" in other.stderr and "agent.tau=0.005 (now 0.5)" in other.stderr
    assert "2 runs: 0 finished, 2 failed" in other.stdout
    assert record(finished)["status"] == "finished" and len(record(finished)["attempts"]) == 1


@pytest.mark.parametrize(
    "launcher, stop",
    [("basic", "ctrl-c"), ("joblib", "ctrl-c"), ("joblib", "late-ctrl-c"), ("joblib", "kill")],
    ids=["basic-ctrl-c", "joblib-ctrl-c", "joblib-ctrl-c-seen-late-by-rl-train", "joblib-sigterm-to-the-main-process"],
)
def test_an_interrupted_sweep_stops_and_running_it_again_resumes_it(tmp_path: Path, launcher: str, stop: str) -> None:
    """Ctrl-C reaches every process of the terminal's group; a `kill` reaches the main process only, which passes
    it to joblib's workers. Either way the running jobs checkpoint and no new job starts. On a loaded machine
    rl-train's own process may handle the Ctrl-C only after the workers have stopped their jobs (late-ctrl-c: it is
    held stopped until then), and then passes SIGTERM to workers that are between runs."""
    sweep_dir = tmp_path / "sweep"
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    args = ["-m", *parallel, "seed=0,1,2", *SWEEP_JOB, "total_steps=20000", "checkpoint.every=100"]
    args.append(f"hydra.sweep.dir={sweep_dir}")
    process = subprocess.Popen(
        cli(*args), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    running = [sweep_dir / "0_seed=0", *([sweep_dir / "1_seed=1"] if launcher == "joblib" else [])]
    try:
        wait_for(lambda: all(any((job / "checkpoints").glob("step_*")) for job in running), process)
        if stop == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        elif stop == "late-ctrl-c":
            os.kill(process.pid, signal.SIGSTOP)
            os.killpg(process.pid, signal.SIGINT)
            wait_for(lambda: all(status(job) == "interrupted" for job in running), process)
            os.kill(process.pid, signal.SIGCONT)  # its handler runs now, with every job stopped
        else:
            process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:  # a stop that did not work: no sweep left training or held stopped
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 130, stdout + stderr
    errors = [line for line in stderr.splitlines() if line.startswith("rl-train: error:")]
    assert errors == [f"rl-train: error: sweep stopped by a signal; continue with: rl-train resume={sweep_dir}"]
    assert "Traceback" not in stderr, stderr
    assert all(record(job)["status"] == "interrupted" for job in running)
    assert not (sweep_dir / "2_seed=2" / "run.json").exists()  # the last job never started

    # under load one job can start many steps after the other, and be stopped past total_steps=600
    stopped_at = {job.name: record(job)["summary"]["step"] for job in running}
    again = run_sweep(f"resume={sweep_dir}", "total_steps=600")
    assert again.returncode == 0, again.stderr
    assert [a["status"] for a in record(running[0])["attempts"]] == ["interrupted", "finished"]
    for job in (sweep_dir / f"{n}_seed={n}" for n in range(3)):
        assert record(job)["summary"]["step"] == max(600, stopped_at.get(job.name, 0))


def status(run_dir: Path) -> str | None:
    try:
        return record(run_dir)["status"]
    except (OSError, ValueError):  # not written yet
        return None


def test_rl_train_passes_sigterm_only_to_workers_that_handle_it(monkeypatch) -> None:
    """A joblib worker that has run no job yet would die of SIGTERM (and loky would then fail the whole sweep with
    TerminatedWorkerError): it is left alone, and finds the stop requested when its job starts."""
    from joblib.externals.loky import reusable_executor

    sleeper = "import signal, sys, time\n{}print('ready', flush=True)\ntime.sleep(60)"
    handler = "signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))\n"
    bare, handling = (
        subprocess.Popen([sys.executable, "-c", sleeper.format(code)], stdout=subprocess.PIPE, text=True)
        for code in ("", handler)
    )
    try:
        assert bare.stdout.readline() == handling.stdout.readline() == "ready\n"
        assert handles_signal(bare.pid, signal.SIGTERM) is False and handles_signal(handling.pid, signal.SIGTERM)
        monkeypatch.setattr(reusable_executor, "_executor", SimpleNamespace(_processes={1: bare, 2: handling}))
        assert stop_parallel_jobs() == 1
        assert handling.wait(timeout=30) == 3
        assert bare.poll() is None
    finally:
        for process in (bare, handling):
            process.kill()
            process.wait()


def wait_for(condition, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_submitit_local_job_preempted_by_sigusr2_is_requeued_and_resumes_to_the_end(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "seed=3", *SWEEP_JOB]
    args += ["total_steps=3000", "checkpoint.every=100", f"hydra.sweep.dir={sweep_dir}"]
    process = subprocess.Popen(cli(*args), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job = sweep_dir / "0"
    wait_for(lambda: any((job / "checkpoints").glob("step_*")), process)
    holder = (job / ".lock").read_text().split()  # "process <pid> on <host> ..."
    os.kill(int(holder[1]), signal.SIGUSR2)  # what SLURM sends before a time limit or preemption
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stdout + stderr
    content = record(job)
    assert [a["status"] for a in content["attempts"]] == ["interrupted", "finished"]
    assert content["summary"]["step"] == 3000
    steps = [step for step, _ in read_scalars(job / "tb")["charts/sps"]]
    assert steps == sorted(set(steps)) and steps[-1] == 3000  # one curve, no repeated steps after the resume


def test_optuna_sweep_averages_seeds_per_trial_and_writes_the_best_parameters(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_sweep(
        "-m",
        "search=ddpg",
        "hydra.sweeper.n_trials=3",
        "seeds=2",
        *SWEEP_JOB,
        "total_steps=100",
        "eval.every=100",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    # net.hidden and agent.batch_size are fixed on the command line, which wins over the search space
    assert set(results["best_params"]) == {"agent.alpha", "agent.beta", "agent.tau", "agent.noise_scale"}
    trials = [p for p in sweep_dir.iterdir() if p.is_dir()]
    assert len(trials) == 3 and all(p.name.split("_")[0] in "012" and "alpha=" in p.name for p in trials)
    means = []
    for trial in trials:
        values = [record(trial / f"seed_{seed}")["objective"]["value"] for seed in (0, 1)]
        means.append(sum(values) / 2)
    assert results["best_value"] == pytest.approx(max(means))
    assert "6 runs: 6 finished" in result.stdout


# ------------------------------------------------------------------------------------------- pieces
def test_job_names_keep_what_the_sweep_varies_with_short_unambiguous_keys() -> None:
    overrides = ["env=pendulum", "agent.tau=0.01", "seed=1", "total_steps=100"]
    excluded = constant_keys(["env=pendulum", "agent.tau=0.005,0.01", "seed=0,1", "total_steps=100"])
    assert excluded == ["env", "total_steps"]
    assert job_name(overrides, excluded) == "tau=0.01_seed=1"
    both = ["agent.actor_net.hidden=64", "agent.critic_net.hidden=32"]
    assert job_name(both, []) == "actor_net.hidden=64_critic_net.hidden=32"
    assert job_name(["agent.alpha=0.00035212375", "env.id=ALE/Breakout-v5"], []) == "alpha=0.0003521_id=ALE-Breakout-v5"
    long = job_name([f"agent.key{i}=value{i}" for i in range(30)], [])
    assert len(long) <= 96 and long != job_name([f"agent.key{i}=value{i}" for i in range(29)], [])


def test_parallel_jobs_share_the_cores_and_spread_over_gpus() -> None:
    joblib = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}
    assert parallel_jobs(joblib, cores=16) == 2
    assert parallel_jobs({**joblib, "n_jobs": -1}, cores=16) == 16
    assert parallel_jobs({**joblib, "n_jobs": -2}, cores=16) == 15
    assert parallel_jobs({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, cores=16) == 1
    assert [threads_per_job(16, jobs) for jobs in (1, 2, 3, 32)] == [16, 8, 5, 1]
    assert [device_for_job("auto", n, gpus=4) for n in range(6)] == [f"cuda:{n % 4}" for n in range(6)]
    assert device_for_job("cuda", 5, gpus=2) == "cuda:1"
    assert device_for_job("auto", 5, gpus=1) == "auto"  # one GPU: every job on it
    assert device_for_job("cuda:0", 5, gpus=4) == "cuda:0" and device_for_job("cpu", 3, gpus=4) == "cpu"


def test_sweep_outcome_counts_the_runs_of_one_launch_and_names_the_first_failure(tmp_path: Path) -> None:
    jobs = [("0_a=1", "finished", "now"), ("1_a=2", "diverged", "now"), ("2_a=3", None, "now")]
    for name, status, launch in [*jobs, ("3_a=4", "failed", "an earlier launch")]:
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".launch").write_text(json.dumps({"launch": launch}))
        if status:
            (tmp_path / name / "run.json").write_text(json.dumps({"status": status, "error": "NaN at step 5"}))
    outcome = sweep_outcome(tmp_path, launch="now")
    assert not outcome.ok
    assert outcome.statuses == {"0_a=1": "finished", "1_a=2": "diverged", "2_a=3": "not started"}
    line = outcome.line()
    assert "3 runs: 1 finished, 1 diverged, 1 not started" in line and "1_a=2: NaN at step 5" in line
    assert len(sweep_outcome(tmp_path).statuses) == 4  # every launch
    assert SweepOutcome(tmp_path, {"0": "finished"}).ok
    assert not SweepOutcome(tmp_path, {"0": "finished"}, stopped=True).ok


def test_optuna_interval_syntax_passes_the_up_front_check_and_its_ends_are_checked() -> None:
    assert validate_overrides(["env=pendulum", "agent.alpha=tag(log, interval(1e-4, 1e-2))"]) == []
    validate_overrides(["env=pendulum", "net.hidden=range(16, 64, 16)"])
    with pytest.raises(ConfigError, match="agent.tau"):
        validate_overrides(["env=pendulum", "agent.tau=interval(0.001, 2.0)"])
    with pytest.raises(ConfigError, match=r"int\(interval\(low, high\)\) for an integer key"):
        validate_overrides(["env=pendulum", "net.hidden=interval(16, 256)"])  # the sampler would draw floats
    validate_overrides(["env=pendulum", "net.hidden=int(interval(16, 256))"])
    # a search space from conf/search/ joins the check, less the keys the command line fixes
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        _, searched = compose_with_search_space(["search=ddpg", "net.hidden=64"], ["search=ddpg", "net.hidden=64"])
    assert "agent.alpha=tag(log, interval(1e-4, 3e-3))" in searched and len(searched) == 5
    assert not any(override.startswith("net.hidden=") for override in searched)


# ------------------------------------------------------------------------------------------- best and early stops
def test_best_checkpoint_follows_the_objective_and_rl_eval_reads_it(tiny_config, tmp_path: Path) -> None:
    cfg = tiny_config("env=pendulum", "total_steps=300", "eval.every=100", "checkpoint.every=100")
    summary = train(cfg, tmp_path)
    evaluations = read_scalars(tmp_path / "tb")["eval/return_mean"]
    best_step, best_value = max(evaluations, key=lambda point: point[1])
    progress = load_state(tmp_path / "checkpoints" / "best", "progress")
    assert progress["clock"]["step"] == best_step
    assert progress["counters"]["best_objective"] == pytest.approx(best_value)
    assert summary["checkpoint"].endswith("step_000000000300")
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(TINY_PENDULUM)))
    result = run_eval(str(tmp_path), "checkpoint=best", "episodes=1")
    assert result.returncode == 0, result.stderr
    assert "checkpoints/best" in result.stdout


TINY_PENDULUM = ("env=pendulum", "device=cpu", "net.hidden=32", "total_steps=300")


def test_early_stops_at_a_target_objective_or_a_time_budget_end_as_finished(tiny_config, tmp_path: Path) -> None:
    target = train(tiny_config("env=pendulum", "eval.every=100", "stop.at_objective=-100000"), tmp_path / "target")
    assert target["step"] == 100 and target["stopped_by"] == "at_objective" and not target["interrupted"]
    assert record(tmp_path / "target")["status"] == "finished"
    at_the_end = train(tiny_config("env=pendulum", "eval.every=0", "stop.at_objective=-100000"), tmp_path / "end")
    assert at_the_end["step"] == 300 and at_the_end["stopped_by"] is None  # reached at the last evaluation: not early
    budget = train(tiny_config("env=pendulum", "stop.after_minutes=1e-6"), tmp_path / "budget")
    assert budget["step"] == 1 and budget["stopped_by"] == "after_minutes"
    assert "eval/return_mean" in budget  # the final evaluation still runs
    assert math.isfinite(budget["eval/return_mean"])


def test_seeds_per_job_train_one_run_per_seed_and_report_the_mean(tiny_config, tmp_path: Path) -> None:
    summary = train(tiny_config("env=pendulum", "total_steps=150", "eval.every=150", "seed=4", "seeds=2"), tmp_path)
    values = [record(tmp_path / f"seed_{seed}")["objective"]["value"] for seed in (4, 5)]
    assert summary["seeds"] == [4, 5]
    assert summary["eval/return_mean"] == pytest.approx(sum(values) / 2)
    saved = yaml.safe_load((tmp_path / "seed_5" / ".hydra" / "overrides.yaml").read_text())
    assert saved[-2:] == ["seed=5", "seeds=1"]
    again = train(tiny_config("env=pendulum", "total_steps=150", "eval.every=150", "seed=4", "seeds=2"), tmp_path, True)
    assert again["eval/return_mean"] == summary["eval/return_mean"]  # both runs had finished: skipped
    assert len(record(tmp_path / "seed_4")["attempts"]) == 1


@pytest.mark.parametrize(
    "search, setting",
    [
        ("ddpg", ["experiment=ddpg_pendulum"]),
        ("rainbow", ["experiment=rainbow_cartpole"]),
        ("drqn", ["experiment=drqn_tmaze"]),
        ("anogan", ["agent=anogan"]),
        ("autoencoder", ["agent=autoencoder", "data.path=readings.csv"]),
    ],
)
def test_every_search_space_names_real_keys_with_legal_values_and_the_objectives_direction(search, setting) -> None:
    from hydra import compose, initialize_config_dir

    from rl_runner.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*setting, f"search={search}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert "optuna" in sweeper._target_.lower() and sweeper.max_failure_rate == 1.0
    assert sweeper.direction == {"max": "maximize", "min": "minimize"}[cfg.agent.objective.direction.value]
    params = [f"{key}={value}" for key, value in sweeper.params.items()]
    assert len(params) >= 3
    validate_overrides([*setting, *params], sources=False)  # every key exists, both ends / every choice is legal


def test_a_sampled_value_out_of_bounds_fails_its_job_with_the_reason_in_run_json(tiny_config, tmp_path: Path) -> None:
    job_dir = tmp_path / "3_gamma=2.0"
    (job_dir / ".hydra").mkdir(parents=True)  # Hydra makes a job's directory (and its .hydra/) before the job runs
    with pytest.raises(ConfigError, match="agent.gamma=2.0 must be in"):
        train(tiny_config("env=pendulum", "agent.gamma=2.0"), job_dir, continue_existing=True)
    assert record(job_dir)["status"] == "failed" and "agent.gamma=2.0" in record(job_dir)["error"]
    assert sweep_outcome(tmp_path).statuses == {"3_gamma=2.0": "failed"}


def test_a_joblib_sweep_of_fewer_jobs_than_workers_starts_one_worker_per_job() -> None:
    # an idle worker has no stop handlers of its own: a Ctrl-C would kill it and break joblib's pool
    few = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "seed=0,1"]
    assert worker_count_override(few, hydra_settings(few)) == ["hydra.launcher.n_jobs=2"]
    enough = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1,2", "agent.tau=0.1,0.2"]
    assert worker_count_override(enough, hydra_settings(enough)) == []
    assert worker_count_override(["seed=0,1"], hydra_settings(["seed=0,1"])) == []  # the basic launcher
