"""Categories on the valence/arousal plane (thesis 003 §5.4, Figs 5.3-5.10), made measurable.

The thesis only looked at scatter plots and read "one-to-one" (Happy, Fear) and "one-to-two"
(Sad, Angry, Disgust, Surprise) region mappings off them, and "a VA point maps to 5 or 6
emotions" the other way. The same arrays here give the plots and numbers that test those words:
a quadrant occupancy table per category, and the conditional entropies H(category | VA cell)
and H(VA cell | category) over a grid of cells, with their mutual information.

:func:`analyse` takes per-frame arrays, so the same code reads a dataset's labels and a run's
predictions (argmax category, predicted VA). NumPy and matplotlib only (Agg canvas, no pyplot).

Files written into the output folder::

    va_scatter.png     one panel per category and one with all of them overlaid, over [-1, 1]^2
    va_hist2d.png      one 2-D histogram per category (frames per bin)
    quadrants.csv      per category: frames in Q1-Q4, their total, and the row fractions
    entropies.json     H(category), H(cell), H(category | cell), H(cell | category), mutual
                       information (bits), the grid, labelled and unlabelled frame counts
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

UNLABELLED = -1
QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
SCATTER, HISTOGRAM, QUADRANT_TABLE, ENTROPIES = "va_scatter.png", "va_hist2d.png", "quadrants.csv", "entropies.json"


def _checked(va, category, n_classes):
    """``(va float64 (N, 2), category int (N,))``, refused with the reason when they do not fit."""
    va = np.asarray(va, np.float64)
    category = np.asarray(category)
    if va.ndim != 2 or va.shape[1] != 2:
        raise ValueError(f"va must be (N, 2) valence, arousal; got shape {va.shape}")
    if category.shape != (len(va),):
        raise ValueError(f"category must be (N,) with N = {len(va)} (one per VA pair); got shape {category.shape}")
    if not np.isfinite(va).all():
        raise ValueError(f"va holds {int((~np.isfinite(va)).any(axis=1).sum())} non-finite pairs")
    category = category.astype(np.int64)
    bad = (category < UNLABELLED) | (category >= n_classes)
    if bad.any():
        raise ValueError(f"category values must be 0..{n_classes - 1} or {UNLABELLED} (unlabelled); got "
                         f"{sorted(set(category[bad].tolist()))[:5]}")
    return va, category


def quadrant(va) -> np.ndarray:
    """Quadrant index 0-3 (Q1-Q4) of each (valence, arousal): Q1 V>=0, A>=0; Q2 V<0, A>=0;
    Q3 V<0, A<0; Q4 V>=0, A<0. A value of exactly 0 counts as non-negative, so the origin is in
    Q1, (-0.1, 0) in Q2 and (0, -0.1) in Q4: every pair lands in exactly one quadrant."""
    va = np.asarray(va, np.float64)
    pleasant, aroused = va[:, 0] >= 0, va[:, 1] >= 0
    return np.select([pleasant & aroused, ~pleasant & aroused, ~pleasant & ~aroused], [0, 1, 2], 3)


def quadrant_counts(va, category, n_classes) -> np.ndarray:
    """(n_classes, 4) frames of each category in Q1-Q4; unlabelled frames are left out."""
    va, category = _checked(va, category, n_classes)
    known = category >= 0
    counts = np.zeros((n_classes, 4), np.int64)
    np.add.at(counts, (category[known], quadrant(va[known])), 1)
    return counts


def cells(va, bins=4) -> np.ndarray:
    """Cell index of each pair on a ``bins`` x ``bins`` grid over [-1, 1]^2: valence bin * bins +
    arousal bin. Bins are half-open [lo, hi) except the last, which holds 1; values outside
    [-1, 1] fall in the edge cells."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    va = np.asarray(va, np.float64)
    index = np.clip(np.floor((va + 1.0) / 2.0 * bins), 0, bins - 1).astype(np.int64)
    return index[:, 0] * bins + index[:, 1]


def _entropy(counts) -> float:
    """Shannon entropy in bits of the distribution ``counts`` (any shape) is proportional to."""
    p = np.asarray(counts, np.float64).ravel()
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: one value gives 0, not -0


def entropies(va, category, n_classes, bins=4) -> dict:
    """H(category), H(cell), H(category | cell), H(cell | category) and their mutual information
    I = H(category) - H(category | cell), in bits, from the joint frame counts of category and VA
    cell (:func:`cells`). H(category | cell) near 0 means a VA cell names its category; H(cell |
    category) near 0 means a category sits in one cell. Unlabelled frames are left out and counted."""
    va, category = _checked(va, category, n_classes)
    known = category >= 0
    if not known.any():
        raise ValueError(f"none of the {len(category)} frames has a category")
    joint = np.zeros((n_classes, bins * bins), np.int64)
    np.add.at(joint, (category[known], cells(va[known], bins)), 1)
    h_joint, h_category, h_cell = _entropy(joint), _entropy(joint.sum(axis=1)), _entropy(joint.sum(axis=0))
    return {"h_category": h_category, "h_cell": h_cell,
            "h_category_given_cell": h_joint - h_cell, "h_cell_given_category": h_joint - h_category,
            "mutual_information": h_category + h_cell - h_joint, "unit": "bits",
            "bins": bins, "range": [-1.0, 1.0], "frames": int(known.sum()), "unlabelled": int((~known).sum())}


def write_quadrants(counts, classes, path) -> None:
    """quadrants.csv: per category its Q1-Q4 counts, total and row fractions (empty when it has no frame)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["category", *QUADRANTS, "total", *(f"{q}_fraction" for q in QUADRANTS)])
        for name, row in zip(classes, counts):
            total = int(row.sum())
            fractions = [f"{v / total:.6f}" if total else "" for v in row]
            writer.writerow([name, *(int(v) for v in row), total, *fractions])


def _figure(n_panels, columns=4, size=3.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = -(-n_panels // columns)
    fig = Figure(figsize=(size * min(columns, n_panels), size * rows))
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(rows, min(columns, n_panels), i + 1) for i in range(n_panels)]


def _plane(ax, title):
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.axhline(0, color="0.6", lw=0.6)
    ax.axvline(0, color="0.6", lw=0.6)
    ax.set_aspect("equal")
    ax.set_xlabel("valence")
    ax.set_ylabel("arousal")
    ax.set_title(title, fontsize=10)


def colour(k):
    """The colour of class ``k`` in every plot of this package (tab10, as many classes as it has)."""
    from matplotlib import colormaps

    return colormaps["tab10"](k % 10)


def plot_scatter(va, category, classes, path, title=""):
    """va_scatter.png: each category's frames on its own panel, then all overlaid (Figs 5.3-5.10)."""
    va, category = _checked(va, category, len(classes))
    fig, axes = _figure(len(classes) + 1)
    size = 4 if len(va) > 2000 else 10
    for k, (ax, name) in enumerate(zip(axes, classes)):
        points = va[category == k]
        ax.scatter(points[:, 0], points[:, 1], s=size, alpha=0.4, color=colour(k), linewidths=0, rasterized=True)
        _plane(ax, f"{name} ({len(points)})")
    overlay = axes[-1]
    for k, name in enumerate(classes):
        points = va[category == k]
        overlay.scatter(points[:, 0], points[:, 1], s=size, alpha=0.3, color=colour(k), linewidths=0,
                        label=name, rasterized=True)
    _plane(overlay, "all categories")
    overlay.legend(fontsize=7, markerscale=2, loc="lower left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(str(path), dpi=90)


def plot_histograms(va, category, classes, path, bins=20, title=""):
    """va_hist2d.png: per category, frames per bin of a ``bins`` x ``bins`` grid over [-1, 1]^2."""
    va, category = _checked(va, category, len(classes))
    fig, axes = _figure(len(classes))
    edges = np.linspace(-1, 1, bins + 1)
    for k, (ax, name) in enumerate(zip(axes, classes)):
        points = np.clip(va[category == k], -1, 1)
        counts, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=[edges, edges])
        image = ax.imshow(counts.T, origin="lower", extent=(-1, 1, -1, 1), cmap="viridis", interpolation="nearest",
                          vmin=0, vmax=max(counts.max(), 1))
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        _plane(ax, f"{name} ({len(points)})")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(str(path), dpi=90)


def analyse(va, category, classes, out, *, bins=4, title="") -> dict:
    """Write the module's four files for per-frame ``va`` (N, 2) and ``category`` (N,) (class
    indices into ``classes``, the caller's order; -1 unlabelled) into folder ``out``; returns
    {name: path} of what it wrote. Raises ValueError when no frame has a category."""
    va, category = _checked(va, category, len(classes))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"scatter": out / SCATTER, "histograms": out / HISTOGRAM,
             "quadrants": out / QUADRANT_TABLE, "entropies": out / ENTROPIES}
    summary = entropies(va, category, len(classes), bins)
    summary["classes"] = list(classes)
    paths["entropies"].write_text(json.dumps(summary, indent=2))
    write_quadrants(quadrant_counts(va, category, len(classes)), classes, paths["quadrants"])
    plot_scatter(va, category, classes, paths["scatter"], title)
    plot_histograms(va, category, classes, paths["histograms"], title=title)
    return paths
