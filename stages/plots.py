"""Stage plots: the pipeline's charts as PNG images, for a pull request comment or any viewer.

Reads the chart data ``metrics/plots/history.csv`` (train) and ``roc.csv``, ``confusion.csv``,
``predictions.csv`` (evaluate). Writes ``metrics/plots/images/<chart>.png`` for every chart with
data for the task: training loss, validation loss and (classification) validation accuracy per
generation; ROC and confusion matrix (classification); predicted against actual and residuals
(regression). The folder is written anew, so an image of another task never lingers. ``CHARTS``
defines each chart once; the top-level ``plots:`` section of dvc.yaml is the same list (what
``dvc plots show`` draws), which tests/test_plots.py checks.

Same params, same bytes, on any machine with the versions of requirements.lock: matplotlib's Agg
rasterizer at a fixed size and dpi, matplotlib's own default style (no ``matplotlibrc`` is read),
its bundled DejaVu Sans (never a system font), and no PNG metadata (no Software, no date).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from stages.common import PLOTS, run_stage

from evomlp.artifacts import Outputs, atomic_path, remove_output
from evomlp.errors import EvomlpError

IMAGES = PLOTS / "images"
SIZE = (6.4, 4.8)  # inches; at DPI, 640 x 480 pixels
DPI = 100
RC = {
    "font.family": ["DejaVu Sans"],
    "font.size": 10.0,
    "text.hinting": "force_autohint",
    "text.antialiased": True,
    "lines.antialiased": True,
    "axes.formatter.use_mathtext": False,
    "axes.unicode_minus": True,
    "path.simplify": True,
    "agg.path.chunksize": 0,
    "figure.figsize": list(SIZE),
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "savefig.bbox": None,
    "savefig.facecolor": "white",
    "svg.hashsalt": "evomlp",  # fixed ids, should an SVG ever be written
    "svg.fonttype": "path",
}
NO_METADATA = {"Software": None}  # matplotlib's PNG writer adds no date; this drops its version


@dataclass(frozen=True)
class Chart:
    """One chart: ``y`` against ``x`` of ``metrics/plots/<source>``, drawn as ``kind``."""

    name: str  # plot id in dvc.yaml and the image's file name
    kind: str  # line, roc, confusion or scatter
    source: str
    x: str
    y: str
    title: str
    x_label: str
    y_label: str


CHARTS = (
    Chart("training_loss", "line", "history.csv", "generation", "train_loss",
          "Training loss without the L2 penalty", "generation", "training loss (no L2 penalty)"),
    Chart("validation_loss", "line", "history.csv", "generation", "validation_loss",
          "Validation loss", "generation", "validation loss"),
    Chart("validation_accuracy", "line", "history.csv", "generation", "validation_accuracy",
          "Validation accuracy", "generation", "validation accuracy"),
    Chart("roc", "roc", "roc.csv", "fpr", "tpr",
          "Test ROC (micro-averaged one-vs-rest if multiclass)", "false positive rate", "true positive rate"),
    Chart("confusion", "confusion", "confusion.csv", "actual", "predicted",
          "Test confusion matrix", "actual class", "predicted class"),
    Chart("predicted_vs_actual", "scatter", "predictions.csv", "actual", "predicted",
          "Test predictions against actual values", "actual", "predicted"),
    Chart("residuals", "scatter", "predictions.csv", "predicted", "residual",
          "Test residuals (actual - predicted)", "predicted", "residual (actual - predicted)"),
)
DVC_TEMPLATES = {"line": "linear", "roc": "simple", "confusion": "confusion", "scatter": "scatter"}


def dvc_plot(chart: Chart) -> dict:
    """The chart's entry in the top-level ``plots:`` section of dvc.yaml."""
    return {
        chart.name: {
            "template": DVC_TEMPLATES[chart.kind],
            "title": chart.title,
            "x": chart.x,
            "y": {(PLOTS / chart.source).as_posix(): chart.y},
            "x_label": chart.x_label,
            "y_label": chart.y_label,
        }
    }


# -- reading the chart data -------------------------------------------------------------------
def read_table(path: Path) -> dict[str, list[str]]:
    """``{column: cells}`` of a CSV file with a header (no rows is a table of empty columns)."""
    if not path.is_file():
        raise EvomlpError(f"{path}: chart data not found (run the pipeline: dvc repro)")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise EvomlpError(f"{path}: empty file; expected a CSV header (run the pipeline: dvc repro)")
    header = rows[0]
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise EvomlpError(f"{path}: line {number} has {len(row)} cells, the header {len(header)}")
    return {column: [row[i] for row in rows[1:]] for i, column in enumerate(header)}


def column(tables: dict, chart: Chart, name: str) -> list[str]:
    table = tables[chart.source]
    if name not in table:
        raise EvomlpError(f"{PLOTS / chart.source}: no column {name!r} (chart {chart.name}); it has {list(table)}")
    return table[name]


def numbers(chart: Chart, name: str, cells: list[str]) -> list[float]:
    """Cells as floats; an empty cell (no value for this task) is NaN."""
    values = []
    for cell in cells:
        try:
            values.append(float(cell) if cell != "" else math.nan)
        except ValueError:
            raise EvomlpError(f"{PLOTS / chart.source}: column {name!r}: {cell!r} is not a number") from None
    return values


def finite_points(tables: dict, chart: Chart) -> tuple[list[float], list[float]]:
    """The ``(x, y)`` pairs of ``chart`` where both are finite numbers."""
    xs = numbers(chart, chart.x, column(tables, chart, chart.x))
    ys = numbers(chart, chart.y, column(tables, chart, chart.y))
    pairs = [(x, y) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
    return [x for x, _ in pairs], [y for _, y in pairs]


def class_order(labels: set[str]) -> list[str]:
    """Class names in numeric order if they are all numbers (``2`` before ``10``), else by name."""
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


# -- drawing ----------------------------------------------------------------------------------
def setup_matplotlib() -> None:
    """matplotlib's default style plus ``RC``, with only its bundled fonts."""
    import matplotlib
    from matplotlib import font_manager

    matplotlib.rcdefaults()  # forget any matplotlibrc
    matplotlib.rcParams.update(RC)
    bundled = (Path(matplotlib.get_data_path()) / "fonts" / "ttf").resolve()
    manager = font_manager.fontManager
    manager.ttflist = [font for font in manager.ttflist if Path(font.fname).resolve().parent == bundled]
    found = Path(font_manager.findfont(font_manager.FontProperties(family=RC["font.family"])))
    if found.resolve().parent != bundled:
        raise EvomlpError(f"matplotlib: the font {RC['font.family'][0]} is not its bundled one ({found})")


def draw_line(axes, xs, ys, chart: Chart) -> None:
    axes.plot(xs, ys, linewidth=1.2, color="#945dd6")


def draw_roc(axes, xs, ys, chart: Chart) -> None:
    axes.plot([0, 1], [0, 1], linestyle="--", linewidth=0.8, color="grey")
    axes.plot(xs, ys, linewidth=1.5, color="#945dd6")
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.01)
    axes.set_aspect("equal")


def draw_scatter(axes, xs, ys, chart: Chart) -> None:
    if chart.y == "residual":
        axes.axhline(0.0, linestyle="--", linewidth=0.8, color="grey")
    else:  # predicted against actual: the diagonal is a perfect prediction
        low, high = min(xs + ys), max(xs + ys)
        axes.plot([low, high], [low, high], linestyle="--", linewidth=0.8, color="grey")
    axes.scatter(xs, ys, s=12, alpha=0.6, color="#945dd6", linewidths=0)


def draw_confusion(axes, actual: list[str], predicted: list[str]) -> None:
    """Counts with actual classes across (x) and predicted classes down (y), as DVC's template."""
    from matplotlib.ticker import MaxNLocator

    classes = class_order(set(actual) | set(predicted))
    index = {name: i for i, name in enumerate(classes)}
    counts = [[0] * len(classes) for _ in classes]
    for a, p in zip(actual, predicted):
        counts[index[p]][index[a]] += 1
    image = axes.imshow(counts, cmap="Blues", vmin=0, aspect="auto", interpolation="nearest")
    axes.figure.colorbar(image, ax=axes, label="test rows", ticks=MaxNLocator(integer=True))
    peak = max(max(row) for row in counts)
    if len(classes) <= 20:
        for p, row in enumerate(counts):
            for a, count in enumerate(row):
                axes.text(a, p, str(count), ha="center", va="center", fontsize=9,
                          color="white" if count > peak / 2 else "black")
    axes.set_xticks(range(len(classes)), classes)
    axes.set_yticks(range(len(classes)), classes)


DRAW = {"line": draw_line, "roc": draw_roc, "scatter": draw_scatter}


def png(tables: dict, chart: Chart) -> bytes | None:
    """The chart as PNG bytes, or ``None`` if it has no data for this task."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=SIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if chart.kind == "confusion":
        actual, predicted = column(tables, chart, chart.x), column(tables, chart, chart.y)
        if not actual:
            return None
        draw_confusion(axes, actual, predicted)
    else:
        xs, ys = finite_points(tables, chart)
        if not xs:
            return None
        DRAW[chart.kind](axes, xs, ys, chart)
        axes.grid(True, linewidth=0.5, alpha=0.5)
    axes.set_title(chart.title)
    axes.set_xlabel(chart.x_label)
    axes.set_ylabel(chart.y_label)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata=NO_METADATA)
    return buffer.getvalue()


def render(plots_dir: Path = PLOTS) -> dict[str, bytes]:
    """``{file name: PNG bytes}`` of every chart with data, from the CSV files in ``plots_dir``."""
    tables = {source: read_table(plots_dir / source) for source in dict.fromkeys(c.source for c in CHARTS)}
    setup_matplotlib()
    images = {}
    for chart in CHARTS:
        image = png(tables, chart)
        if image is not None:
            images[f"{chart.name}.png"] = image
    return images


def write_images(images: dict[str, bytes], folder: Path = IMAGES, outputs: Outputs | None = None) -> None:
    """Write ``images`` into ``folder`` and remove any other image there, all or nothing."""
    outputs = outputs or Outputs(folder)
    with outputs.written():
        for stale in folder.glob("*.png"):
            if stale.name not in images:
                remove_output(stale)
        for name, content in images.items():
            with atomic_path(folder / name) as temporary:
                temporary.write_bytes(content)


def main() -> None:
    outputs = Outputs(IMAGES)
    images = render()
    write_images(images, IMAGES, outputs)
    print(f"plots: {len(images)} charts -> {IMAGES}/ ({', '.join(sorted(images))})")


if __name__ == "__main__":
    run_stage(main)
