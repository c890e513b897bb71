"""t-SNE maps of per-frame vectors (thesis 003 §5.6, Figs 5.11-5.13).

The thesis embedded frozen ImageNet CNN features and saw faces of one person and of one emotion
side by side; it did not look at the trained layers. Here any vectors go in (the CNN features,
the LSTM outputs, the last hidden head layer of a trained run), coloured by category and by
valence and by arousal, so the claim can be checked layer by layer. scikit-learn's TSNE, seeded;
the thesis used the tsne-visualization package, whose image grid (faces placed on the grid cell
nearest their 2-D position, Fig 5.11) is redrawn here.

Files written by :func:`embed` for a map called NAME::

    NAME_tsne.csv        per point: its row in the input, x, y, category, valence, arousal
    NAME_category.png    the points coloured by category (grey: unlabelled)
    NAME_valence.png     coloured by valence, and NAME_arousal.png by arousal (-1 blue .. 1 red)
    NAME_faces.png       the faces on a grid by their t-SNE position (when faces are given)
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from fer_keras.analysis.va_plane import colour

EXACT_MAX = 100  # measured on 2 cores: 12 points 0.08 s exact, 0.9 s Barnes-Hut; 200 points 1.7 s, 0.6 s


def subsample(n, max_points, seed=0) -> np.ndarray:
    """Sorted row indices of at most ``max_points`` of ``n`` rows, drawn without replacement (seeded)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def tsne(vectors, *, perplexity=30.0, seed=0) -> np.ndarray:
    """(n, 2) t-SNE coordinates of (n, ...) vectors. The perplexity is clipped to (n - 1) / 3 (at
    least 1), below the number of points as TSNE requires, so small sets still map; up to
    EXACT_MAX points the exact gradient is faster than Barnes-Hut's approximation."""
    from sklearn.manifold import TSNE

    x = np.asarray(vectors, np.float32).reshape(len(vectors), -1)
    if len(x) < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {len(x)}")
    perplexity = min(float(perplexity), max(1.0, (len(x) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed,
                method="exact" if len(x) <= EXACT_MAX else "barnes_hut").fit_transform(x)


def grid_cells(coords, side) -> np.ndarray:
    """The cell (row * side + column) of a ``side`` x ``side`` grid given to each 2-D point: the
    free cell nearest its position scaled onto the grid, points taken in order (y grows upwards)."""
    coords = np.asarray(coords, np.float64)
    if len(coords) > side * side:
        raise ValueError(f"{len(coords)} points do not fit a {side}x{side} grid")
    low, span = coords.min(axis=0), np.ptp(coords, axis=0)
    scaled = (coords - low) / np.where(span > 0, span, 1.0) * (side - 1)
    column, row = np.meshgrid(np.arange(side), np.arange(side))
    centres = np.stack([column.ravel(), (side - 1 - row).ravel()], axis=1).astype(np.float64)
    free = np.ones(side * side, bool)
    taken = np.empty(len(coords), np.int64)
    for i, point in enumerate(scaled):
        distance = ((centres - point) ** 2).sum(axis=1)
        distance[~free] = np.inf
        taken[i] = int(distance.argmin())
        free[taken[i]] = False
    return taken


def plot_image_grid(faces, coords, path, cell=32) -> None:
    """The faces (n, H, W, 3) uint8 on the smallest square grid that holds them, each in the free
    cell nearest its t-SNE position (:func:`grid_cells`), ``cell`` pixels a side; white where empty."""
    from PIL import Image

    side = max(1, math.ceil(math.sqrt(len(faces))))
    canvas = np.full((side * cell, side * cell, 3), 255, np.uint8)
    for face, index in zip(faces, grid_cells(coords, side)):
        r, c = divmod(int(index), side)
        small = Image.fromarray(np.asarray(face, np.uint8)).resize((cell, cell), Image.BILINEAR)
        canvas[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = np.asarray(small)
    Image.fromarray(canvas).save(str(path))


def _axes(title):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 5.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig, ax


def plot_by_category(coords, category, classes, path, title="") -> None:
    """The points coloured by class (-1, unlabelled: grey)."""
    fig, ax = _axes(title)
    category = np.asarray(category)
    size = 6 if len(coords) > 1000 else 14
    unlabelled = category < 0
    if unlabelled.any():
        ax.scatter(*coords[unlabelled].T, s=size, color="0.75", linewidths=0, label="unlabelled")
    for k, name in enumerate(classes):
        chosen = category == k
        if chosen.any():
            ax.scatter(*coords[chosen].T, s=size, color=colour(k), linewidths=0, label=name)
    ax.legend(fontsize=7, markerscale=1.5, loc="best")
    fig.tight_layout()
    fig.savefig(str(path), dpi=90)


def plot_by_value(coords, values, path, label, title="") -> None:
    """The points coloured by a value in [-1, 1] (valence or arousal), with a colour bar."""
    fig, ax = _axes(title)
    points = ax.scatter(*np.asarray(coords).T, c=values, cmap="coolwarm", vmin=-1, vmax=1,
                        s=6 if len(coords) > 1000 else 14, linewidths=0)
    fig.colorbar(points, ax=ax, label=label)
    fig.tight_layout()
    fig.savefig(str(path), dpi=90)


def embed(vectors, out, name, *, category=None, classes=(), va=None, faces=None, max_points=2000,
          max_faces=400, perplexity=30.0, seed=0, title="") -> dict:
    """t-SNE of (N, ...) per-frame ``vectors`` into folder ``out`` (files as the module docstring
    lists, each plot only when its values are given): at most ``max_points`` rows, a seeded draw,
    and at most ``max_faces`` of those on the image grid. ``category`` (N,) indexes ``classes``
    (-1 unlabelled), ``va`` is (N, 2), ``faces`` (N, H, W, 3) uint8. Returns {name: path}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(vectors)
    for what, values in (("category", category), ("va", va), ("faces", faces)):
        if values is not None and len(values) != n:
            raise ValueError(f"{what} has {len(values)} rows for {n} vectors")
    rows = subsample(n, max_points, seed)
    coords = tsne(np.asarray(vectors)[rows], perplexity=perplexity, seed=seed)
    title = title or name
    paths = {"coordinates": out / f"{name}_tsne.csv"}
    picked = {"category": None if category is None else np.asarray(category)[rows],
              "va": None if va is None else np.asarray(va, np.float64)[rows]}
    with open(paths["coordinates"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["row", "x", "y", "category", "valence", "arousal"])
        for i, (row, (x, y)) in enumerate(zip(rows, coords)):
            cat = "" if picked["category"] is None else int(picked["category"][i])
            v, a = ("", "") if picked["va"] is None else (f"{picked['va'][i, 0]:.6g}", f"{picked['va'][i, 1]:.6g}")
            writer.writerow([int(row), f"{x:.6g}", f"{y:.6g}", cat, v, a])
    if picked["category"] is not None:
        paths["category"] = out / f"{name}_category.png"
        plot_by_category(coords, picked["category"], classes, paths["category"], f"{title}: category")
    if picked["va"] is not None:
        for d, label in enumerate(("valence", "arousal")):
            paths[label] = out / f"{name}_{label}.png"
            plot_by_value(coords, picked["va"][:, d], paths[label], label, f"{title}: {label}")
    if faces is not None:
        shown = np.sort(subsample(len(rows), max_faces, seed + 1))
        paths["faces"] = out / f"{name}_faces.png"
        plot_image_grid(np.asarray(faces)[rows[shown]], coords[shown], paths["faces"])
    return paths
