"""Charts: each defined once in dvc.yaml, the chart data of each task, PNG images that are the
same bytes on every run and CPU, and a `dvc plots show` page that needs no network."""

from __future__ import annotations

import configparser
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from evomlp.artifacts import save_csv
from evomlp.metrics import CONFUSION_COLUMNS, PREDICTION_COLUMNS, ROC_COLUMNS
from evomlp.trainer import HISTORY_COLUMNS
from stages import plots
from stages.evaluate import evaluation_outputs, write_test_outputs

ROOT = Path(__file__).resolve().parents[1]
DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
TEMPLATE = ROOT / "docs" / "plots" / "dvc-plots.html"


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    header, *rows = [line.split(",") for line in path.read_text().splitlines()]
    return header, rows


def chart_data(directory: Path, task: str, monkeypatch, n: int = 40) -> dict:
    """The train and evaluate stages' chart files for ``task`` in ``directory/metrics/plots``."""
    rng = np.random.default_rng(7)
    monkeypatch.chdir(directory)
    classification = task != "regression"
    history = [
        {
            "generation": g, "n_evaluations": 20 * (g + 1), "best_fitness": 2.0 / (g + 1) + 0.3,
            "mean_fitness": 3.0 / (g + 1) + 0.4, "train_loss": 1.0 / (g + 1), "validation_loss": 1.2 / (g + 1),
            "train_accuracy": 0.6 + g / 200 if classification else None,
            "validation_accuracy": 0.55 + g / 200 if classification else None,
        }
        for g in range(60)
    ]
    save_csv(plots.PLOTS / "history.csv", list(HISTORY_COLUMNS), history)
    if task == "regression":
        y = rng.normal(100, 30, size=n)
        scores, classes = (y + rng.normal(0, 10, size=n)).astype(np.float32)[:, None], np.array([])
    elif task == "binary":
        y = rng.integers(0, 2, size=n)
        scores, classes = np.clip(0.7 * y + rng.uniform(0, 0.3, size=n), 0, 1), np.array(["benign", "malignant"])
    else:
        y = rng.integers(0, 3, size=n)
        logits = rng.normal(size=(n, 3)) + 2.0 * np.eye(3)[y]
        scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        classes = np.array(["setosa", "versicolor", "virginica"])
    write_test_outputs(evaluation_outputs(Path("metrics/test.json"), plots=True), Path("metrics/test.json"), task, y, scores,
                       classes, plots=True)
    return {"y": y, "scores": scores, "classes": classes}


def run_plots_stage(directory: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS", "MPL", "EVOMLP"))}
    environ.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-m", "stages.plots"], cwd=directory, env=environ,
                          capture_output=True, text=True, timeout=300)


def images(directory: Path) -> dict[str, str]:
    """``{name: sha256}`` of the images the plots stage wrote into ``directory``."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((directory / plots.IMAGES).glob("*"))}


# -- dvc.yaml: every chart once ---------------------------------------------------------------
def test_dvc_yaml_defines_every_chart_once_at_top_level_and_no_stage_plots():
    assert DVC_YAML["plots"] == [plots.dvc_plot(chart) for chart in plots.CHARTS] + [plots.IMAGES.as_posix()]
    ids = [entry if isinstance(entry, str) else next(iter(entry)) for entry in DVC_YAML["plots"]]
    assert len(ids) == len(set(ids))
    assert not [name for name, stage in DVC_YAML["stages"].items() if "plots" in stage]  # drawn twice otherwise
    outputs = {}
    for name, stage in DVC_YAML["stages"].items():
        for entry in stage.get("outs", []):
            path, options = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
            outputs[path] = (name, options)
    sources = {(plots.PLOTS / chart.source).as_posix() for chart in plots.CHARTS}
    for source in sources | {plots.IMAGES.as_posix()}:  # stage outputs that live in git
        assert outputs[source][1] == {"cache": False}, source
    assert outputs[plots.IMAGES.as_posix()][0] == "plots"
    assert sources <= set(DVC_YAML["stages"]["plots"]["deps"])


def test_every_chart_reads_columns_its_stage_writes():
    written = {"history.csv": HISTORY_COLUMNS, "roc.csv": ROC_COLUMNS, "confusion.csv": CONFUSION_COLUMNS,
               "predictions.csv": PREDICTION_COLUMNS}
    for chart in plots.CHARTS:
        assert {chart.x, chart.y} <= set(written[chart.source]), chart.name
    # the training chart is the loss without the L2 penalty, and says so
    (training,) = [chart for chart in plots.CHARTS if chart.name == "training_loss"]
    assert training.y == "train_loss" and "without the L2 penalty" in training.title


# -- the chart data of each task --------------------------------------------------------------
def test_regression_writes_actual_predicted_residual_and_no_roc_or_confusion(tmp_path, monkeypatch):
    data = chart_data(tmp_path, "regression", monkeypatch)
    header, rows = read_csv(tmp_path / "metrics/plots/predictions.csv")
    assert header == ["actual", "predicted", "residual"]
    values = np.array(rows, dtype=float)
    assert len(values) == len(data["y"])
    np.testing.assert_array_equal(values[:, 0], data["y"])
    np.testing.assert_array_equal(values[:, 1], data["scores"][:, 0].astype(np.float64))
    np.testing.assert_allclose(values[:, 2], values[:, 0] - values[:, 1], rtol=0, atol=1e-9)
    for name, columns in (("roc.csv", ROC_COLUMNS), ("confusion.csv", CONFUSION_COLUMNS)):
        assert read_csv(tmp_path / "metrics/plots" / name) == (list(columns), [])


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_classification_confusion_has_one_row_per_test_example_and_no_predictions(tmp_path, monkeypatch, task):
    data = chart_data(tmp_path, task, monkeypatch)
    header, rows = read_csv(tmp_path / "metrics/plots/confusion.csv")
    assert header == ["actual", "predicted"]
    assert [actual for actual, _ in rows] == list(data["classes"][data["y"]])
    probabilities = data["scores"] if task == "multiclass" else np.column_stack([1 - data["scores"], data["scores"]])
    assert [predicted for _, predicted in rows] == list(data["classes"][probabilities.argmax(axis=1)])
    assert read_csv(tmp_path / "metrics/plots/predictions.csv") == (list(PREDICTION_COLUMNS), [])


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_roc_points_run_from_0_0_to_1_1_with_fpr_and_tpr_monotone(tmp_path, monkeypatch, task):
    chart_data(tmp_path, task, monkeypatch)
    header, rows = read_csv(tmp_path / "metrics/plots/roc.csv")
    assert header == ["fpr", "tpr", "threshold"]
    fpr, tpr, threshold = np.array(rows, dtype=float).T
    assert len(fpr) > 3
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(threshold) <= 0)
    assert np.trapezoid(tpr, fpr) > 0.8  # the synthetic scores separate the classes


# -- PNG images -------------------------------------------------------------------------------
def test_plots_stage_images_are_the_same_bytes_every_run_and_under_any_openblas_core_type(tmp_path, monkeypatch):
    chart_data(tmp_path, "multiclass", monkeypatch)
    style = tmp_path / "mplconfig"
    style.mkdir()  # a user's matplotlibrc must not change a pixel
    (style / "matplotlibrc").write_text("axes.facecolor: yellow\naxes.linewidth: 4\nxtick.labelsize: 20\n")
    first = run_plots_stage(tmp_path)
    assert first.returncode == 0, first.stderr
    reference = images(tmp_path)
    assert sorted(reference) == ["confusion.png", "roc.png", "training_loss.png", "validation_accuracy.png",
                                 "validation_loss.png"]
    for image in (tmp_path / plots.IMAGES).iterdir():
        content = image.read_bytes()
        assert content.startswith(b"\x89PNG") and b"Software" not in content and b"matplotlib" not in content
    native = {"EVOMLP_NATIVE_KERNELS": "1"}  # lifts the pin, so OPENBLAS_CORETYPE is obeyed
    for env in [{}, dict(native, OPENBLAS_CORETYPE="SandyBridge", MPLCONFIGDIR=str(style)),
                dict(native, OPENBLAS_CORETYPE="Haswell")]:
        (tmp_path / plots.IMAGES / "roc.png").unlink()
        again = run_plots_stage(tmp_path, **env)
        assert again.returncode == 0, (env, again.stderr)
        assert images(tmp_path) == reference, env


def test_regression_images_replace_the_classification_ones(tmp_path, monkeypatch):
    chart_data(tmp_path, "binary", monkeypatch)
    plots.write_images(plots.render(), plots.IMAGES)
    assert "roc.png" in images(tmp_path)
    chart_data(tmp_path, "regression", monkeypatch)
    plots.write_images(plots.render(), plots.IMAGES)
    assert sorted(images(tmp_path)) == ["predicted_vs_actual.png", "residuals.png", "training_loss.png",
                                        "validation_loss.png"]  # no chart without data, no stale image


def test_plots_stage_without_chart_data_is_a_one_line_error(tmp_path):
    result = run_plots_stage(tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: metrics/plots/history.csv: chart data not found "
                                          "(run the pipeline: dvc repro)"]
    assert not (tmp_path / plots.IMAGES).exists()


# -- the dvc plots show page ------------------------------------------------------------------
def test_the_repo_page_template_inlines_the_vega_libraries_dvc_render_would_load():
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc" / "config")
    assert (ROOT / ".dvc" / config["plots"]["html_template"]).resolve() == TEMPLATE
    page = TEMPLATE.read_text()
    assert "{plot_divs}" in page and "{scripts}" not in page  # so dvc-render's CDN tags are dropped
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", page, re.IGNORECASE)
    from dvc_render.vega import VegaRenderer

    wanted = re.findall(r"npm/(vega[\w-]*@[\d.]+)", VegaRenderer.SCRIPTS)
    assert len(wanted) == 3 and all(f"/* {package} (npm)" in page for package in wanted)


def test_dvc_plots_show_draws_only_the_charts_of_the_task_and_loads_nothing_from_the_network(tmp_path, monkeypatch):
    chart_data(tmp_path, "regression", monkeypatch)
    plots.write_images(plots.render(), plots.IMAGES)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"plots": DVC_YAML["plots"]}, sort_keys=False))
    (tmp_path / "docs/plots").mkdir(parents=True)
    (tmp_path / "docs/plots/dvc-plots.html").write_bytes(TEMPLATE.read_bytes())
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True, env=env)
    (tmp_path / ".dvc/config").write_text((ROOT / ".dvc/config").read_text())
    shown = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "-o", "out"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "failed" not in shown.stderr.lower(), shown.stderr
    page = (tmp_path / "out/index.html").read_text()
    assert "cdn.jsdelivr" not in page and not re.search(r"<script[^>]*\bsrc=", page)
    specs = {name: spec for spec, name in re.findall(r"var spec = (\{.*?\});\s*vegaEmbed\('#(\w+)'", page, re.DOTALL)}
    assert sorted(specs) == sorted(chart.name for chart in plots.CHARTS)
    assert specs["roc"] == specs["confusion"] == "{}"  # no rows for regression: no chart
    assert '"predicted"' in specs["predicted_vs_actual"] and '"residual"' in specs["residuals"]
    assert "metrics/plots/images/residuals.png" in page and "metrics/plots/images/roc.png" not in page
