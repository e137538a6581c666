"""rl-plot (rl_runner/plot.py) on synthetic run directories: event files written with SummaryWriter, no training."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image
from scipy.stats import trim_mean
from torch.utils.tensorboard import SummaryWriter

from rl_runner.logging import read_scalars
from rl_runner.plot import (
    aggregate,
    draw_curves,
    find_runs,
    format_number,
    group_runs,
    interquartile_mean,
    main,
    plot_curves,
    short_names,
    summarise,
)
from tests.conftest import REPO_ROOT

TAG = "eval/return_mean"
TAUS = (0.005, 0.01)
SEEDS = (0, 1, 2)
EVAL_STEPS = list(range(0, 1001, 100))


def write_events(tb_dir: Path, scalars: dict[str, list[tuple[int, float]]], purge_step: int | None = None) -> None:
    writer = SummaryWriter(str(tb_dir), purge_step=purge_step)
    for tag, points in scalars.items():
        for step, value in points:
            writer.add_scalar(tag, value, step)
    writer.close()


def write_run(
    run_dir: Path,
    scalars: dict[str, list[tuple[int, float]]] | None,
    seed: int = 0,
    tau: float = 0.005,
    status: str = "finished",
    config: bool = True,
) -> Path:
    """A run directory as rl-train leaves it: tb/ events, .hydra/config.yaml and run.json."""
    if scalars is not None:
        write_events(run_dir / "tb", scalars)
    if config:
        (run_dir / ".hydra").mkdir(parents=True)
        content = {
            "seed": seed,
            "agent": {"name": "ddpg", "tau": tau, "objective": {"metric": TAG, "direction": "max"}},
            "env": {"id": "Pendulum-v1"},
            "total_steps": 1000,
            "device": "cpu",
            "resume": None,
            "checkpoint": {"every": 500 + seed},  # bookkeeping that differs: never a setting
        }
        OmegaConf.save(OmegaConf.create(content), run_dir / ".hydra" / "config.yaml")
    objective = {"metric": TAG, "direction": "max", "value": None}
    record = {"status": status, "seed": seed, "agent": "ddpg", "env": "Pendulum-v1", "objective": objective}
    (run_dir / "run.json").write_text(json.dumps(record))
    return run_dir


def eval_value(tau: float, seed: int, index: int) -> float:
    """Rises with the step, then drops at the last evaluation (so the best value is not the final one); all
    exactly representable in the float32 TensorBoard stores."""
    slope = 10.0 if tau == 0.005 else 5.0
    return slope * index + 3.0 * seed - (15.0 if index == len(EVAL_STEPS) - 1 else 0.0)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A multirun directory of 2 settings x 3 seeds; returns it and {(tau, seed): [(step, value), ...]}."""
    root = tmp_path_factory.mktemp("multirun") / "2025-01-01_00-00-00"
    written = {}
    job = 0
    for tau in TAUS:
        for seed in SEEDS:
            points = [(step, eval_value(tau, seed, i)) for i, step in enumerate(EVAL_STEPS)]
            episodes = [(137 * k + seed, float(k)) for k in range(1, 7)]  # irregular steps, as episodes end
            scalars = {TAG: points, "train/episode_return": episodes, "charts/sps": [(1000, 50.0)]}
            status = "interrupted" if (tau, seed) == (0.01, 2) else "finished"
            write_run(root / f"{job}_seed={seed}_tau={tau}", scalars, seed, tau, status)
            written[tau, seed] = points
            job += 1
    return root, written


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as file:
        return {row["group"]: row for row in csv.DictReader(file)}


def markdown_rows(path: Path) -> dict[str, list[str]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ") and "---" not in line]
    cells = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[1:]]
    return {row[0]: row for row in cells}


def run_main(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------------- the table
def test_table_numbers_are_computed_from_the_logged_values(sweep, tmp_path: Path, capsys) -> None:
    root, written = sweep
    out = tmp_path / "out"
    code, stdout, stderr = run_main(capsys, str(root), "--out", str(out), "--threshold", "50")
    assert code == 0, stderr
    assert stdout.splitlines() == [f"rl-plot: wrote {out / name}" for name in TAG_FILES]

    table = read_csv(out / "results.csv")
    markdown = markdown_rows(out / "results.md")
    assert list(table) == ["tau=0.005", "tau=0.01"]  # seed and checkpoint.every ignored; best final mean first
    assert list(markdown) == list(table)
    for tau in TAUS:
        label = f"tau={tau}"
        finals = np.array([written[tau, seed][-1][1] for seed in SEEDS])
        bests = np.array([max(value for _, value in written[tau, seed]) for seed in SEEDS])
        reached = [next((s for s, v in written[tau, seed] if v >= 50), None) for seed in SEEDS]
        reached = [step for step in reached if step is not None]
        row = table[label]
        assert int(row["runs"]) == 3
        assert int(row["finished"]) == (3 if tau == 0.005 else 2)
        assert float(row["final_mean"]) == pytest.approx(finals.mean())
        assert float(row["iqm"]) == pytest.approx(finals.mean())  # 3 seeds: nothing trimmed
        assert float(row["best"]) == pytest.approx(bests.mean())
        assert bests.mean() > finals.mean()
        lower, upper = float(row["final_ci_lower"]), float(row["final_ci_upper"])
        assert finals.min() <= lower <= finals.mean() <= upper <= finals.max()
        assert int(row["threshold_reached"]) == len(reached)
        if reached:
            assert float(row["steps_to_threshold"]) == pytest.approx(np.mean(reached))
        else:
            assert row["steps_to_threshold"] == ""
        cells = markdown[label]
        assert cells[1:3] == [row["runs"], row["finished"]]
        assert cells[3] == f"{format_number(finals.mean())} [{format_number(lower)}, {format_number(upper)}]"
        assert cells[4:6] == [format_number(finals.mean()), format_number(bests.mean())]
        steps = f"{np.mean(reached):.0f}" if reached else "–"
        assert cells[6] == f"{steps} ({len(reached)}/3 reached)"
    assert table["tau=0.01"]["threshold_reached"] == "1"  # one seed of three gets there: the test means something


TAG_FILES = ("eval_return_mean.png", "results.md", "results.csv")


def test_the_table_is_reproducible_and_minimising_reverses_the_order(sweep, tmp_path: Path, capsys) -> None:
    root, _ = sweep
    for out in ("a", "b"):
        assert run_main(capsys, str(root), "--out", str(tmp_path / out))[0] == 0
    assert (tmp_path / "a" / "results.csv").read_text() == (tmp_path / "b" / "results.csv").read_text()
    rows = summarise(group_runs(find_runs([root])), TAG, direction="min")
    assert [row.label for row in rows] == ["tau=0.01", "tau=0.005"]
    assert rows[0].best == pytest.approx(np.mean([eval_value(0.01, seed, 0) for seed in SEEDS]))  # the minimum


def test_interquartile_mean_trims_a_quarter_from_each_end() -> None:
    assert interquartile_mean([1.0, 2.0, 3.0]) == pytest.approx(2.0)
    assert interquartile_mean([0.0, 1.0, 2.0, 100.0]) == pytest.approx(1.5)
    values = [5.0, -3.0, 8.0, 1.0, 0.0, 2.0, 9.0, 4.0]
    assert interquartile_mean(values) == pytest.approx(np.mean(sorted(values)[2:6]))
    assert interquartile_mean(values) == pytest.approx(trim_mean(values, 0.25))


# ------------------------------------------------------------------------------------------- grouping
def test_groups_are_labelled_by_the_settings_that_differ(sweep, tmp_path: Path, capsys) -> None:
    root, _ = sweep
    groups = group_runs(find_runs([root]))
    assert {label: len(runs) for label, runs in groups.items()} == {"tau=0.005": 3, "tau=0.01": 3}
    assert {run.seed for run in groups["tau=0.01"]} == set(SEEDS)

    single = group_runs(find_runs([root / "0_seed=0_tau=0.005", root / "1_seed=1_tau=0.005"]))
    assert list(single) == ["all runs"]
    assert short_names(["agent.tau", "net.hidden", "agent.actor_net.hidden"]) == {
        "agent.tau": "tau",
        "net.hidden": "net.hidden",
        "agent.actor_net.hidden": "actor_net.hidden",
    }


def test_nested_seed_runs_take_the_job_config_and_runs_without_one_are_named_by_directory(tmp_path, capsys) -> None:
    points = {TAG: [(0, 1.0), (100, 2.0)]}
    for tau in TAUS:
        job = tmp_path / f"job_tau={tau}"
        write_run(job, None, tau=tau)  # the job's config; its runs are seed_N/
        for seed in SEEDS[:2]:
            write_run(job / f"seed_{seed}", points, seed, tau, config=False)
    write_run(tmp_path / "loose", points, config=False)
    capsys.readouterr()
    groups = group_runs(find_runs([tmp_path]))
    assert {label: len(runs) for label, runs in groups.items()} == {"tau=0.005": 2, "tau=0.01": 2, "loose": 1}
    assert capsys.readouterr().err.strip() == f"rl-plot: warning: {tmp_path / 'loose'}: no .hydra/config.yaml; " + (
        "grouped by its directory name"
    )


# ------------------------------------------------------------------------------------------- curves
def test_the_png_shows_one_curve_per_group(sweep, tmp_path: Path) -> None:
    root, written = sweep
    groups = group_runs(find_runs([root]))
    curves = aggregate(groups, TAG)
    figure = draw_curves(curves, TAG)
    axes = figure.axes[0]
    assert len(axes.get_lines()) == len(groups) == 2
    assert len(axes.collections) == 2  # the bands
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["tau=0.005 (n=3)", "tau=0.01 (n=3)"]
    assert TAG in axes.get_title()
    # identical eval grids: exactly the logged values, no interpolation
    curve = curves["tau=0.01"]
    assert curve.steps.tolist() == EVAL_STEPS
    np.testing.assert_allclose(curve.mean, np.mean([[v for _, v in written[0.01, s]] for s in SEEDS], axis=0))
    assert np.all(curve.lower <= curve.mean + 1e-9) and np.all(curve.mean <= curve.upper + 1e-9)

    path = plot_curves(curves, TAG, tmp_path)
    assert path == tmp_path / "eval_return_mean.png"
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 0 and image.size[1] > 0


def test_runs_with_different_step_grids_are_interpolated_onto_a_common_grid(tmp_path: Path) -> None:
    episodes = "train/episode_return"
    write_run(tmp_path / "a", {episodes: [(0, 0.0), (100, 10.0), (200, 20.0), (300, 30.0)]}, seed=0)
    write_run(tmp_path / "b", {episodes: [(0, 0.0), (150, 30.0), (250, 50.0)]}, seed=1)
    groups = group_runs(find_runs([tmp_path]))
    curve = aggregate(groups, episodes, band="minmax")["all runs"]
    assert curve.steps.tolist() == [0, 100, 150, 200, 250]  # the union, up to the shortest run's end
    assert curve.mean[1] == pytest.approx((10.0 + 20.0) / 2)  # b at step 100: 30 * 100/150
    assert curve.lower[2] == pytest.approx(15.0) and curve.upper[2] == pytest.approx(30.0)
    smoothed = aggregate(groups, episodes, smooth=2)["all runs"]
    assert smoothed.mean[1] == pytest.approx((curve.mean[0] + curve.mean[1]) / 2)


def test_a_resumed_run_shows_the_second_attempt_after_its_purge(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    first = [(step, float(step)) for step in range(0, 301, 50)]
    write_run(run, {TAG: first})
    time.sleep(1.0)  # event files are read in name order, and the name starts with the time in whole seconds
    second = [(step, -float(step)) for step in range(250, 401, 50)]
    write_events(run / "tb", {TAG: second}, purge_step=201)
    out = tmp_path / "out"
    assert run_main(capsys, str(run), "--out", str(out), "--threshold", "250")[0] == 0
    row = read_csv(out / "results.csv")["all runs"]
    assert float(row["final_mean"]) == -400.0
    assert float(row["best"]) == 200.0  # the first attempt's 250 and 300 were purged
    assert row["threshold_reached"] == "0"
    groups = group_runs(find_runs([run]))
    (lowest,) = summarise(groups, TAG, threshold=-300, direction="min")
    assert lowest.steps_to_threshold == 300.0 and lowest.best == -400.0  # the second attempt's step 300
    curve = aggregate(groups, TAG)["all runs"]
    assert curve.steps.tolist() == [0, 50, 100, 150, 200, 250, 300, 350, 400]
    assert curve.mean.tolist()[-4:] == [-250.0, -300.0, -350.0, -400.0]


def test_tensorboard_aggregates_read_back_as_the_mean_curves(sweep, tmp_path: Path, capsys) -> None:
    root, _ = sweep
    out = tmp_path / "out"
    code, stdout, _ = run_main(capsys, str(root), "--out", str(out), "--tensorboard", "--band", "std")
    assert code == 0
    assert f"rl-plot: wrote {out / 'tb' / 'tau=0.005'}" in stdout.splitlines()
    curves = aggregate(group_runs(find_runs([root])), TAG, band="std")
    for label, curve in curves.items():
        scalars = read_scalars(out / "tb" / label)
        assert [step for step, _ in scalars[f"{TAG}/mean"]] == curve.steps.tolist()
        np.testing.assert_allclose([v for _, v in scalars[f"{TAG}/mean"]], curve.mean, rtol=1e-6)
        np.testing.assert_allclose([v for _, v in scalars[f"{TAG}/upper"]], curve.upper, rtol=1e-6)
    # a second time replaces the event files rather than adding to them
    assert run_main(capsys, str(root), "--out", str(out), "--tensorboard")[0] == 0
    assert len(list((out / "tb" / "tau=0.01").glob("events.out.tfevents.*"))) == 1


# ------------------------------------------------------------------------------------------- command line
def test_the_command_runs_as_a_module_and_writes_next_to_a_single_dir(sweep) -> None:
    root, _ = sweep
    command = [sys.executable, "-m", "rl_runner.plot", str(root), "--smooth", "2"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"rl-plot: wrote {root / 'plots' / name}" for name in TAG_FILES]
    assert result.stderr == ""


def test_without_evaluations_the_training_returns_are_shown_with_a_note(tmp_path: Path, capsys) -> None:
    write_run(tmp_path / "run", {"train/episode_return": [(10, 1.0), (25, 2.0)], "loss/critic": [(10, 0.5)]})
    code, stdout, stderr = run_main(capsys, str(tmp_path), "--out", str(tmp_path / "out"))
    assert code == 0
    assert stderr == "rl-plot: note: no run logged eval/return_mean; showing train/episode_return\n"
    assert f"rl-plot: wrote {tmp_path / 'out' / 'train_episode_return.png'}" in stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{missing}"], "rl-plot: error: no such directory: {missing}"),
        (["{empty}"], "rl-plot: error: no runs found under {empty}"),
        (["{sweep}", "--tag", "eval/nope"], "rl-plot: error: no run logged eval/nope; tags: charts/sps, eval/return"),
        (["{sweep}", "--threshold", "high"], "rl-plot: error: argument --threshold: not a number: 'high'"),
        ([], "rl-plot: error: the following arguments are required: DIR"),
    ],
)
def test_errors_are_one_line_and_exit_code_2(sweep, tmp_path: Path, capsys, arguments, message) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    names = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "sweep": sweep[0]}
    code, stdout, stderr = run_main(capsys, *(argument.format(**names) for argument in arguments))
    assert code == 2
    assert stdout == ""
    lines = stderr.splitlines()
    assert lines[-1].startswith(message.format(**names))
    assert len(lines) == (2 if message.startswith("rl-plot: error: argument") or not arguments else 1)  # + usage


def test_the_runs_of_a_sweep_that_cannot_be_shown_are_listed_with_why(tmp_path: Path, capsys) -> None:
    """A job that failed at its start (run.json says so, no events), one that diverged before its first evaluation
    and one that never began are named on stderr and in results.md, not silently missing from the table."""
    sweep = tmp_path / "sweep"
    for seed in SEEDS[:2]:
        write_run(sweep / f"{seed}_seed={seed}", {TAG: [(0, 1.0), (100, 3.0)]}, seed)
    failed = write_run(sweep / "2_seed=2", None, seed=2, status="failed")
    error = "ValueError: env.id='Nope-v0' could not be made: | not registered"
    (failed / "run.json").write_text(json.dumps({**json.loads((failed / "run.json").read_text()), "error": error}))
    diverged = write_run(sweep / "3_seed=3", {"train/episode_return": [(10, 1.0)]}, seed=3, status="diverged")
    (diverged / "run.json").write_text(json.dumps({"status": "diverged", "error": "training diverged at step 10"}))
    (sweep / "4_seed=4" / ".hydra").mkdir(parents=True)  # the sweep was stopped before this job began
    out = tmp_path / "out"
    code, _, stderr = run_main(capsys, str(sweep), "--out", str(out))
    assert code == 0, stderr
    assert stderr.splitlines() == [
        f"rl-plot: warning: {failed}: failed ({error}), no event files; skipped",
        f"rl-plot: warning: {sweep / '4_seed=4'}: not started, no event files; skipped",
        f"rl-plot: warning: {diverged}: diverged (training diverged at step 10), no {TAG}; skipped",
    ]
    assert read_csv(out / "results.csv")["all runs"]["runs"] == "2"
    markdown = (out / "results.md").read_text()
    left_out = markdown.split("## Left out\n", 1)[1]
    rows = [line for line in left_out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == [
        "| run | status | why |",
        "| 2_seed=2 | failed | ValueError: env.id='Nope-v0' could not be made: \\| not registered; no event files |",
        "| 4_seed=4 | not started | no event files |",
        f"| 3_seed=3 | diverged | training diverged at step 10; no {TAG} |",
    ]
    assert "3 runs in no row above" in left_out


def test_a_corrupt_event_file_is_skipped_with_a_warning(sweep, tmp_path: Path, capsys) -> None:
    good = write_run(tmp_path / "good", {TAG: [(0, 1.0), (100, 3.0)]}, seed=0)
    (good / "tb" / "events.out.tfevents.zzz").write_bytes(os.urandom(300))  # a damaged extra file: the run stays
    broken = tmp_path / "broken"
    (broken / "tb").mkdir(parents=True)
    (broken / "tb" / "events.out.tfevents.x").write_bytes(os.urandom(300))
    code, _, stderr = run_main(capsys, str(tmp_path), "--out", str(tmp_path / "out"))
    assert code == 0
    assert stderr.splitlines() == [
        f"rl-plot: warning: {broken / 'tb' / 'events.out.tfevents.x'}: not a readable TensorBoard event file; skipped",
        f"rl-plot: warning: {broken}: no scalars in its event files (empty or corrupt); skipped",
        f"rl-plot: warning: {good / 'tb' / 'events.out.tfevents.zzz'}: not a readable TensorBoard event file; skipped",
    ]
    assert read_csv(tmp_path / "out" / "results.csv")["all runs"]["final_mean"] == "3.0"


def test_ctrl_c_is_one_line_and_exit_code_130(sweep, monkeypatch, capsys) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("rl_runner.plot.find_runs", interrupted)
    assert run_main(capsys, str(sweep[0])) == (130, "", "rl-plot: interrupted\n")
