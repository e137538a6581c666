"""AnoGAN (rl_runner/agents/anogan.py): it learns the synthetic machine well enough to find its faults (better
than an IsolationForest), latent search and encoder scoring agree, scoring is batched exactly, impossible
settings are refused, and the command line trains on a SKAB-format file and scores new data with rl-eval."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from scipy.stats import spearmanr
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from rl_runner.checkpoint import latest_checkpoint, load_state
from rl_runner.choices import Scoring
from rl_runner.config import ConfigError, check_config, compose_config
from rl_runner.runners.dataset_scoring import restore
from rl_runner.training import train
from tests.conftest import REPO_ROOT, run_cli, run_eval

SKAB_DIR = Path(os.environ.get("RL_RUNNER_SKAB", REPO_ROOT.parent / "shared" / "data" / "skab"))
# The synthetic source with its default faults; fewer windows and search steps than a real run, so it fits CI.
LEARNING = [
    "agent=anogan",
    "device=cpu",
    "progress=false",
    "agent.gan_steps=2000",
    "agent.encoder_steps=300",
    "agent.search_steps=150",
    "data.val_windows=128",
    "data.test_windows=256",
    "eval.every=0",
    "checkpoint.every=0",
    "log.every=500",
]
TINY_GAN = [
    "agent=anogan",
    "device=cpu",
    "progress=false",
    "net.width=4",
    "net.depth=2",
    "agent.latent_dim=4",
    "agent.batch_size=16",
    "agent.gan_steps=30",
    "agent.encoder_steps=20",
    "agent.search_steps=5",
    "agent.search_starts=2",
    "data.window=16",
    "data.train_windows=64",
    "data.val_windows=16",
    "data.test_windows=16",
    "log.every=10",
    "eval.every=25",
    "checkpoint.every=25",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[DictConfig, Path, dict]:
    """One CI-sized AnoGAN run on the synthetic machine, shared by the learning checks."""
    cfg = compose_config(LEARNING)
    run_dir = tmp_path_factory.mktemp("anogan")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the trajectory measured for this test
    try:
        summary = train(cfg, run_dir=run_dir)
    finally:
        torch.set_num_threads(threads)
    return cfg, run_dir, summary


@pytest.mark.slow
def test_anogan_finds_the_synthetic_faults_and_beats_an_isolation_forest(trained) -> None:
    """Latent search reaches ROC-AUC >= 0.9 on held-out faulty windows (default fault sizes), above an
    IsolationForest fitted on the same training windows; results.json and the logs say the same."""
    cfg, run_dir, summary = trained
    agent, data, _ = restore(cfg, latest_checkpoint(run_dir / "checkpoints"), torch.device("cpu"))
    assert summary["eval/roc_auc"] >= 0.9, summary
    forest = IsolationForest(n_estimators=200, random_state=0).fit(data.train.values.reshape(len(data.train), -1))
    forest_auc = roc_auc_score(data.test.labels, -forest.score_samples(data.test.values.reshape(len(data.test), -1)))
    assert summary["eval/roc_auc"] > forest_auc + 0.05, (summary["eval/roc_auc"], forest_auc)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test"]["roc_auc"] == summary["eval/roc_auc"]
    assert results["threshold"]["value"] == summary["eval/threshold"]
    assert "best_f1" in results["test"]["peeking_at_labels"] and "best_f1" not in results["test"]
    assert 0 < summary["eval/val_roc_auc"] <= 1  # the objective: validation windows only
    assert set(os.listdir(latest_checkpoint(run_dir / "checkpoints"))) >= {
        "generator.pt",
        "discriminator.pt",
        "encoder.pt",
        "generator_optimizer.pt",
        "discriminator_optimizer.pt",
        "encoder_optimizer.pt",
        "progress.pt",
    }


@pytest.mark.slow
def test_encoder_and_latent_search_rank_windows_alike(trained) -> None:
    """f-AnoGAN's one-pass encoder scores rank windows as the latent search does (Spearman >= 0.7) and detect
    the faults too."""
    cfg, run_dir, _ = trained
    agent, data, _ = restore(cfg, latest_checkpoint(run_dir / "checkpoints"), torch.device("cpu"))
    windows = torch.as_tensor(data.test.values[:128])
    searched = agent.score(windows, Scoring.latent_search).numpy()
    encoded = agent.score(windows, Scoring.encoder).numpy()
    assert spearmanr(searched, encoded)[0] >= 0.7
    assert roc_auc_score(data.test.labels[:128], encoded) >= 0.85


@pytest.mark.slow
def test_latent_search_lowers_the_score_of_normal_windows(trained) -> None:
    """Over the search, normal windows' scores fall (the mean by more than a third, almost every window lower)."""
    cfg, run_dir, _ = trained
    agent, data, _ = restore(cfg, latest_checkpoint(run_dir / "checkpoints"), torch.device("cpu"))
    normal = torch.as_tensor(data.val.values[data.val.labels == 0][:32])
    agent.search_starts = 1  # from one random z, as AnoGAN: the descent alone
    _, final, history = agent.search_latents(normal, record=True)
    first = history[0]
    assert len(history) == agent.search_steps
    assert final.mean() < 0.67 * first.mean()
    assert (final < first).float().mean() >= 0.95
    means = torch.stack([step.mean() for step in history[::10]])
    assert (means[1:] <= means[:-1] + 1e-6).all()  # sampled every 10 steps, the mean never rises


def test_batched_latent_search_equals_one_window_at_a_time() -> None:
    """Each window keeps its own z and Adam moments: scoring a batch gives each window's own result."""
    cfg = compose_config(TINY_GAN)
    torch.manual_seed(0)
    from rl_runner.agents import build_agent
    from rl_runner.clock import Clock

    agent = build_agent(
        cfg.agent, net=cfg.net, sample_shape=(16, 3), device=torch.device("cpu"), clock=Clock.at_end(50)
    )
    agent.train_mode(False)
    agent.search_steps = 25
    windows = torch.randn(6, 16, 3)
    start = torch.randn(6, cfg.agent.latent_dim)
    z_batch, batched, _ = agent.search_latents(windows, start)
    torch.testing.assert_close(agent.score(windows[2:]), agent.score(windows)[2:])  # its own starts, not a slot's
    for i in range(6):
        z_one, alone, _ = agent.search_latents(windows[i : i + 1], start[i : i + 1])
        torch.testing.assert_close(alone[0], batched[i], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(z_one[0], z_batch[i], rtol=1e-4, atol=1e-5)
    assert not torch.equal(z_batch, start)


@pytest.mark.parametrize("loss", ["standard", "wgan_gp"])
def test_the_generator_updates_every_generator_every_steps_and_its_loss_is_averaged_over_those(loss: str) -> None:
    """With ``generator_every=3`` the discriminator trains every step and the generator every third; the logged
    generator loss is the mean over the steps that updated it, not diluted by the others."""
    from rl_runner.agents import build_agent
    from rl_runner.clock import Clock
    from rl_runner.logging import MetricAccumulator

    cfg = compose_config(TINY_GAN + [f"agent.loss={loss}", "agent.generator_every=3"])
    clock = Clock(horizon=50)
    agent = build_agent(cfg.agent, net=cfg.net, sample_shape=(16, 3), device=torch.device("cpu"), clock=clock)
    generator_before = [p.detach().clone() for p in agent.generator.parameters()]
    accumulator, generator_losses = MetricAccumulator(), []
    for step in range(6):
        metrics = agent.update(torch.randn(16, 16, 3))
        assert ("loss/generator" in metrics) == (step % 3 == 0)
        generator_losses += [float(metrics["loss/generator"])] if "loss/generator" in metrics else []
        assert torch.isfinite(metrics["loss/discriminator"])
        accumulator.add(metrics)
        clock.step += 1
    means = accumulator.pop_means()
    assert means["loss/generator"] == pytest.approx(np.mean(generator_losses), rel=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(generator_before, agent.generator.parameters()))


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["total_steps=10"], "agent.gan_steps + agent.encoder_steps"),
        (["agent.scoring=encoder", "agent.encoder_steps=0"], "needs an encoder"),
        (["agent.adam_betas=[0.5]"], "agent.adam_betas=[0.5] must be two numbers"),
        (["agent.feature_weight=1.5"], "agent.feature_weight=1.5"),
    ],
)
def test_impossible_anogan_settings_are_one_line_errors(overrides: list[str], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_config(compose_config(["agent=anogan", *overrides]), check_device=False)
    assert words in str(info.value) and "\n" not in str(info.value)


def write_skab_like(path: Path, rows: int = 260, seed: int = 0, faulty_from: int = 200, faulty_to: int = 10**9) -> Path:
    """SKAB's layout (datetime first, 8 sensors, anomaly and changepoint labels, ';'), a level shift on rows
    ``faulty_from`` to ``faulty_to`` (excluded), labelled."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    sensors = np.stack([np.sin(t / (3 + i)) + 0.05 * rng.standard_normal(rows) for i in range(8)], axis=1)
    anomaly = ((t >= faulty_from) & (t < faulty_to)).astype(int)
    sensors[anomaly == 1] += 1.5
    names = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature", "Thermocouple"]
    names += ["Voltage", "Volume Flow RateRMS"]
    lines = [";".join(["datetime", *names, "anomaly", "changepoint"])]
    for i in range(rows):
        values = [f"{v:.6f}" for v in sensors[i]]
        lines.append(";".join([f"2020-03-09 10:{i // 60 % 60:02d}:{i % 60:02d}", *values, f"{anomaly[i]}.0", "0.0"]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_cli_trains_on_a_skab_format_file_and_rl_eval_scores_new_data(tmp_path: Path) -> None:
    """``rl-train agent=anogan data=skab data.path=<file>`` runs the SKAB protocol end to end; ``rl-eval`` then
    scores another file with the run's scaler and threshold and writes scores, flags and labels."""
    path = write_skab_like(tmp_path / "1.csv")
    run_dir = tmp_path / "run"
    result = run_cli(
        *[o for o in TINY_GAN if not o.startswith("data.")],
        "data=skab",
        f"data.path={path}",
        "data.train_rows=150",
        "data.window=16",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test"]["windows"] == 260 - 150 and results["test"]["anomalous_windows"] == 60
    assert results["validation"]["anomalous_windows"] == results["validation"]["windows"] // 2  # val_faults

    other = write_skab_like(tmp_path / "2.csv", rows=200, seed=1, faulty_from=170)
    scored = run_eval(str(run_dir), "split=all", f"data.path={other}")
    assert scored.returncode == 0, scored.stderr
    assert "185 all windows scored" in scored.stdout and "ROC-AUC" in scored.stdout
    with open(run_dir / "scores" / "step_000000000050_all.csv") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["file", "first_row", "last_row", "score", "flagged", "label"]
    assert [int(r["label"]) for r in rows] == [int(int(r["last_row"]) >= 170) for r in rows]
    threshold = load_state(latest_checkpoint(run_dir / "checkpoints"), "progress")["loop"]["threshold"]
    assert [int(r["flagged"]) for r in rows] == [int(float(r["score"]) > threshold) for r in rows]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("datetime;a;anomaly\n", "empty"),
        ("datetime;a;anomaly\nx;1;0\ny;2;2\n", "label column anomaly has '2' on line 3"),
        ("datetime;a;anomaly\nx;1;0\ny;nan;0\n", "non-finite value nan"),
        ("datetime;a;anomaly\nx;1;0\ny;b;0\n", "column a is not numeric"),
    ],
)
def test_cli_bad_data_is_one_line_before_training(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    run_dir = tmp_path / "run"
    result = run_cli(
        "agent=anogan", "data=array", f"data.path={path}", "data.label_column=anomaly", f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 2  # a data mistake, refused before anything is written
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rl-train: error: data.path={path}: ") and words in lines[0]
    assert not run_dir.exists()


@pytest.mark.skipif(not SKAB_DIR.is_dir(), reason=f"no SKAB data at {SKAB_DIR} (set RL_RUNNER_SKAB to its folder)")
def test_real_skab_files_load_with_the_protocol() -> None:
    """A real SKAB file: the 8 sensor channels, 60-row windows, the first 400 rows normal reference data and a
    test window for every later row; the whole fault folder loads as one data set with a file index."""
    from rl_runner.data import load_data

    path = SKAB_DIR / "valve1" / "0.csv"
    data = load_data(compose_config(["agent=anogan", "data=skab", f"data.path={path}"]).data)
    rows = sum(1 for _ in open(path)) - 1
    assert len(data.channels) == 8 and "anomaly" not in data.channels and "changepoint" not in data.channels
    assert data.sample_shape == (60, 8)
    assert data.test.last_rows.tolist() == list(range(400, rows))
    assert data.train.last_rows.max() < 320 and len(data.val) == 2 * (80 - 60 + 1)
    folder = load_data(compose_config(["agent=anogan", "data=skab", f"data.path={SKAB_DIR / 'valve2'}"]).data)
    assert len(folder.files) == 4 and set(np.unique(folder.test.files)) == {0, 1, 2, 3}


def test_without_normal_validation_windows_nothing_is_flagged_and_no_f1_is_claimed(tmp_path: Path, caplog) -> None:
    """SKAB's other/2.csv has anomalies inside its reference rows: with no normal validation window there is
    no threshold, so the run reports ROC-AUC but no F1, says why, and rl-eval flags nothing."""
    path = write_skab_like(tmp_path / "2.csv", faulty_from=100, faulty_to=200)
    overrides = [o for o in TINY_GAN if not o.startswith("data.")]
    overrides += ["data=skab", f"data.path={path}", "data.train_rows=150", "data.window=16", "eval.every=0"]
    summary = train(compose_config(overrides), run_dir=tmp_path / "run")
    assert "no normal validation window" in caplog.text
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["threshold"]["value"] is None and "no window is flagged" in results["threshold"]["chosen_from"]
    assert "roc_auc" in results["test"] and "f1" not in results["test"]
    assert "eval/roc_auc" in summary and "eval/f1" not in summary and "eval/threshold" not in summary


def test_rl_eval_scores_a_gan_phase_checkpoint_by_search_and_refuses_other_columns(tmp_path: Path) -> None:
    """A checkpoint saved before the encoder trained is scored by latent search even when encoder scoring is
    asked for (its encoder is untrained), with a threshold recomputed for that; data whose columns differ from
    the run's is refused in one line."""
    from rl_runner.runners.dataset_scoring import evaluate

    path = write_skab_like(tmp_path / "1.csv")
    overrides = [o for o in TINY_GAN if not o.startswith("data.")]
    overrides += ["data=skab", f"data.path={path}", "data.train_rows=150", "data.window=16"]
    train(compose_config(overrides), run_dir=tmp_path / "run")
    gan_phase = tmp_path / "run" / "checkpoints" / "step_000000000025"
    cfg = compose_config(overrides + ["agent.scoring=encoder"])
    agent, _, saved = restore(cfg, gan_phase, torch.device("cpu"))
    assert agent.scoring_in_use() is Scoring.latent_search
    assert agent.score_signature() == saved["threshold_signature"]  # the evaluation at step 25 searched too
    result = evaluate(cfg, latest_checkpoint(tmp_path / "run" / "checkpoints"), torch.device("cpu"), {})
    assert "threshold recomputed for encoder" in result["report"]
    swapped = "Accelerometer2RMS,Accelerometer1RMS,Current,Pressure,Temperature,Thermocouple,Voltage"
    reordered = compose_config(overrides + [f"data.columns=[{swapped},'Volume Flow RateRMS']"])
    with pytest.raises(ValueError, match=r"channels \['Accelerometer2RMS', .* differ from the \['Accelerometer1RMS'"):
        restore(reordered, gan_phase, torch.device("cpu"))
