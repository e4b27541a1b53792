"""The paper's Fig. 2 (mean Dice against trainable parameters), the label-efficiency curve and
Dice against pre-training iterations.

Drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas, so no GUI backend and no
global pyplot state is involved. Error bars are the 95% Student-t interval of the mean over
folds (:mod:`.statistics`; :data:`ERROR_BARS` says so in the subtitles); a setup with a single
fold gets a marker without error bar. In Dice against trainable parameters each legend entry adds
the setup's paired difference to from scratch: mean, 95% interval and reading, the same as the
table's. Setups whose backbone was not pre-trained (from scratch and the random-FPN probes) are
drawn with hollow markers, so the random baseline cannot be read as a pre-trained result.
"""
from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from vox2vec_nnunet.benchmark.collect import Problem
from vox2vec_nnunet.benchmark.pretraining_curve import CurvePoint
from vox2vec_nnunet.benchmark.statistics import MeanStd
from vox2vec_nnunet.benchmark.table import Row, all_cases_label, paired_differences
from vox2vec_nnunet.training.setups import PRETRAINED

_MARKERS = "osD^vP*Xhp"
TITLE_WIDTH = 90
"""Characters per title line (font size 9 on a 7-inch figure)."""
ERROR_BARS = "error bars: 95% Student-t interval of the mean over folds (none with one fold)"


def _error_bar(stats: MeanStd) -> float:
    """Half the 95% interval of a mean over folds, in percent (0: one fold, no interval)."""
    half = stats.half_width()
    return 0.0 if half is None else 100 * half


def _style(index: int, row: Row) -> dict:
    return {"marker": _MARKERS[index % len(_MARKERS)], "color": f"C{index % 10}",
            "markerfacecolor": f"C{index % 10}" if row.backbone_source == PRETRAINED else "none",
            "markersize": 8, "capsize": 4}


def _title(title: str, subtitle: str) -> str:
    """The title and the subtitle's lines, wrapped to fit the figure's width at font size 9."""
    lines = [title, *subtitle.splitlines()]
    return "\n".join(wrapped for line in lines for wrapped in textwrap.wrap(line, TITLE_WIDTH) or [""])


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=150)


def plot_dice_vs_parameters(rows: Sequence[Row], path: Path, subtitle: str = "") -> list[Problem]:
    """Fig. 2: mean Dice over labels (%) against trainable parameters, log-scale x axis.

    One marker per setup, labelled in the legend (from scratch and fine-tuning share their
    parameter count, so labels written beside the markers would overlap); the legend stands
    right of the axes, where it covers no marker however many setups there are. Returns a
    Problem for each setup left out (unknown or disagreeing parameter counts). A legend entry
    ends in the setup's paired difference to from scratch (``Δ +5.0 [-2.1, +12.1] level``).
    """
    fig = Figure(figsize=(10, 5))
    ax = fig.add_subplot()
    left_out = []
    paired = paired_differences(rows) or [None] * len(rows)
    for i, (row, difference) in enumerate(zip(rows, paired)):
        if row.trainable_parameters is None or row.mean_dice.n == 0:
            left_out.append(Problem(row.setup.name, None, "left out of the figure: trainable "
                                    "parameters unknown or inconsistent, or no finite Dice"))
            continue
        delta = "" if difference is None else f"; Δ {difference.short()}"
        ax.errorbar([row.trainable_parameters], [100 * row.mean_dice.mean],
                    yerr=[_error_bar(row.mean_dice)], linestyle="none",
                    label=f"{row.setup.label} (n={row.mean_dice.n}{delta})", **_style(i, row))
    ax.set_xscale("log")
    ax.set_xlabel("Number of trainable parameters (log scale)")
    ax.set_ylabel("Dice (%), mean over labels")
    # left-aligned: the legend beside the axes leaves them narrower than a title line
    ax.set_title(_title("Dice vs. trainable parameters", subtitle), fontsize=9, loc="left")
    ax.grid(True, which="major", alpha=0.3)
    ax.margins(x=0.15, y=0.15)
    if len(left_out) < len(rows):
        title = "Δ: Mean minus from scratch's, paired by fold\n(points; 95% interval; reading)" if any(paired) else None
        ax.legend(fontsize=8, title=title, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  borderaxespad=0.0)
    _save(fig, path)
    return left_out


def plot_dice_vs_labeled(rows: Sequence[tuple[int, Row]], path: Path, subtitle: str = "",
                         all_labeled: Sequence[Row] = (), all_cases: Sequence[int] = ()) -> Figure:
    """Mean Dice over labels (%) against the number of labeled training cases, one line per
    setup, ending in the setup's result with all labels (``all_labeled``: the regular folds,
    which train on ``all_cases`` cases each); returns the figure as drawn. The x axis is logarithmic with base 2
    (labeled counts are typically doubled: 1, 2, 4, ...), with a tick at every labeled count that was run and
    one marked "all" at the largest number of training cases of a regular fold."""
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    all_x = max(all_cases) if all_cases and all_labeled else None
    grouped: dict[str, list[tuple[int, Row]]] = {}
    for num_labeled, row in rows:
        grouped.setdefault(row.setup.name, []).append((num_labeled, row))
    for row in all_labeled if all_x is not None else ():
        grouped.setdefault(row.setup.name, []).append((all_x, row))
    for i, points in enumerate(grouped.values()):
        points = sorted(((k, r) for k, r in points if r.mean_dice.n > 0), key=lambda kr: kr[0])
        if not points:
            continue
        first = points[0][1]
        ax.errorbar([k for k, _ in points], [100 * r.mean_dice.mean for _, r in points],
                    yerr=[_error_bar(r.mean_dice) for _, r in points],
                    label=first.setup.label, **_style(i, first))
    ticks = {k: str(k) for k, _ in rows}
    if all_x is not None:
        ticks[all_x] = all_cases_label(all_cases)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted(ticks)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([ticks[k] for k in sorted(ticks)])
    ax.set_xlabel("Number of labeled training cases (log scale, base 2)")
    ax.set_ylabel("Dice (%), mean over labels")
    ax.set_title(_title("Label efficiency", subtitle), fontsize=9)
    ax.margins(x=0.08)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)
    return fig


def plot_dice_vs_pretraining(points: Sequence[CurvePoint], path: Path, subtitle: str = "") -> None:
    """Mean Dice over labels (%) against pre-training iterations (linear x axis), one line per
    setup and pre-training run and seed, error bars the 95% interval over folds; the random-FPN
    baselines as hollow markers at 0 iterations (:mod:`.pretraining_curve`)."""
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    lines: dict[tuple, list[CurvePoint]] = {}
    for p in points:
        if p.row.mean_dice.n > 0:
            key = (p.row.setup.label, None) if p.checkpoint is None else (
                p.row.setup.label, p.checkpoint.run, p.checkpoint.seed)
            lines.setdefault(key, []).append(p)
    for i, (key, line) in enumerate(lines.items()):
        line.sort(key=lambda p: p.iteration)
        first = line[0]
        label = f"{key[0]} (0 iterations)" if first.checkpoint is None else \
            f"{key[0]}, {first.checkpoint.run}, seed {first.checkpoint.seed}"
        ax.errorbar([p.iteration for p in line], [100 * p.row.mean_dice.mean for p in line],
                    yerr=[_error_bar(p.row.mean_dice) for p in line],
                    linestyle="none" if first.checkpoint is None else "-", label=label, **_style(i, first.row))
    ax.set_xlabel("Pre-training iterations")
    ax.set_ylabel("Dice (%), mean over labels")
    ax.set_title(_title("Dice vs. pre-training iterations", subtitle), fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.05, y=0.15)
    last = max((p.iteration for line in lines.values() for p in line), default=0)
    ax.set_xlim(left=-0.05 * max(last, 1))  # the axis starts at no pre-training
    ax.set_ylim(bottom=0)
    if lines:
        ax.legend(fontsize=8, loc="best")
    _save(fig, path)
