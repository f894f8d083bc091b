"""Figures drawn with matplotlib: training curves of runs, and histograms of bits/dim.

matplotlib's object API (``Figure``, no pyplot): no window, no global state, safe wherever
pixelcnn runs (a training loop, a headless server). Imported only by what draws.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from .images import write_atomic

# One colour per run or set, the same in every panel.
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _wrapped(text: str, width: int) -> str:
    """``text`` in lines of at most ``width`` characters (a long path broken too): a title or label wider
    than the figure would leave the constrained layout no room for the axes."""
    return "\n".join(textwrap.wrap(text, width)) or text


def _save(figure, path: str | Path) -> Path:
    return write_atomic(lambda f: figure.savefig(f, format="png"), path)


def training_curves(runs: list[tuple[str, list[dict[str, Any]]]], path: str | Path, unit: str = "bits/dim") -> Path:
    """Train and test bits/dim (or ``unit``: bits/code for codes) per epoch (left) and the learning
    rate (right), one colour per run.

    ``runs``: (name, metrics.jsonl records) pairs. Solid lines: test; dashed: train.
    """
    figure = _figure(11, 4.2)
    bits, rate = figure.subplots(1, 2, width_ratios=(2, 1))
    for i, (name, records) in enumerate(runs):
        colour = COLOURS[i % len(COLOURS)]
        epochs = [r["epoch"] for r in records]
        bits.plot(epochs, [r["test_bits_per_dim"] for r in records], "-o", color=colour, markersize=3, label=f"{name} test")
        bits.plot(epochs, [r["train_bits_per_dim"] for r in records], "--x", color=colour, alpha=0.7, markersize=4, label=f"{name} train")
        rate.plot(epochs, [r["learning_rate"] for r in records], "-o", color=colour, markersize=3, label=name)
    bits.set(xlabel="epoch", ylabel=unit, title=f"{unit} (solid: test, dashed: train)")
    rate.set(xlabel="epoch", ylabel="learning rate (at the epoch's end)", title="learning rate", yscale="log")
    for axes in (bits, rate):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    bits.legend(fontsize="small", loc="upper right")  # "best" searches, slowly, on every redraw
    return _save(figure, path)


def bits_histogram(sets: list[tuple[str, list[float]]], path: str | Path, title: str, unit: str = "bits/dim") -> Path:
    """Overlaid histograms of bits/dim (or ``unit``), one per set, on shared bins."""
    figure = _figure(7, 4.2)
    axes = figure.subplots()
    values = [v for _, vs in sets for v in vs]
    low, high = min(values), max(values)
    bins = [low + (high - low) * i / 50 for i in range(51)] if high > low else 10
    for i, (name, vs) in enumerate(sets):
        axes.hist(vs, bins=bins, density=True, alpha=0.55, color=COLOURS[i % len(COLOURS)],
                  label=_wrapped(f"{name} ({len(vs)})", 48))
    axes.set(xlabel=unit, ylabel="density (each set has area 1)", title=_wrapped(title, 72))
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right")
    return _save(figure, path)
