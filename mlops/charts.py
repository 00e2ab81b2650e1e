"""PNG charts of a model version's stored holdout metrics, drawn with matplotlib's Agg backend.

matplotlib is imported when a chart is drawn, not with this module: the admin imports this module
in every web worker, and matplotlib adds about 27 MB to each worker's memory.
"""

import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The per-category chart shows the categories with the most holdout rows, because more bars than this
# cannot be labelled legibly.
PER_CATEGORY_MAX_BARS = 30
DPI = 100


class ChartUnavailable(Exception):
    """The stored metrics lack what the chart needs, such as a version trained without a holdout."""


def confusion_matrix_png(metrics: dict) -> bytes:
    """Draw the stored confusion matrix as a heat map; rows are true categories, columns predicted."""
    matrix = metrics.get("confusion_matrix")
    if not matrix or not matrix.get("labels"):
        raise ChartUnavailable("These metrics have no confusion matrix.")
    labels = matrix["labels"]
    counts = np.array(matrix["counts"])

    size = max(4.0, 0.4 * len(labels) + 2.5)
    figure = _figure(figsize=(size + 1.5, size))
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, label="holdout rows")
    axes.set_xticks(range(len(labels)), labels=labels, rotation=90, fontsize=8)
    axes.set_yticks(range(len(labels)), labels=labels, fontsize=8)
    axes.set_xlabel("predicted category")
    axes.set_ylabel("true category")
    axes.set_title("Confusion matrix on the holdout")

    # Counts are written in the cells, in white on the darker half of the colour scale.
    threshold = counts.max() / 2 if counts.size else 0
    for (row, column), count in np.ndenumerate(counts):
        if count:
            colour = "white" if count > threshold else "black"
            axes.text(column, row, str(count), ha="center", va="center", fontsize=7, color=colour)
    return _png(figure)


def per_category_png(metrics: dict) -> bytes:
    """Draw precision and recall of the categories with the most holdout rows as paired bars."""
    rows = metrics.get("per_category")
    if not rows:
        raise ChartUnavailable("These metrics have no per-category precision and recall.")
    shown = sorted(rows, key=lambda row: (-row["support"], row["category"]))[:PER_CATEGORY_MAX_BARS]
    # Most frequent at the top of a horizontal bar chart.
    shown.reverse()
    names = [f"{row['category']} ({row['support']})" for row in shown]
    positions = np.arange(len(shown))

    figure = _figure(figsize=(9, max(3.0, 0.35 * len(shown) + 1.5)))
    axes = figure.add_subplot()
    axes.barh(positions + 0.2, [row["precision"] for row in shown], height=0.4, label="precision")
    axes.barh(positions - 0.2, [row["recall"] for row in shown], height=0.4, label="recall")
    axes.set_yticks(positions, labels=names, fontsize=8)
    axes.set_xlim(0, 1)
    axes.set_xlabel("score on the holdout")
    title = "Precision and recall per category (holdout rows in brackets)"
    if len(rows) > len(shown):
        title += f"\n{len(shown)} most frequent of {len(rows)} categories"
    axes.set_title(title)
    axes.legend(loc="lower right")
    return _png(figure)


def _figure(*, figsize: tuple[float, float]) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=DPI, layout="constrained")


def _png(figure: "Figure") -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()
