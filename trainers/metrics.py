"""Evaluation metrics, their text and their plots: numpy and matplotlib only.

* ``classification_metrics``: accuracy, unweighted average recall (UAR), macro F1,
  per-class recall / precision / F1, support and the confusion matrix, as a JSON-ready dict.
* ``format_metrics``: the same as a few lines of text.
* ``plot_confusion_matrix``, ``plot_history``: PNGs.
* ``cross_validation_summary``, ``format_cv_table``: per-fold and mean +/- std tables.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from ravdess_tfrecords import storage


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 ``(C, C)``: rows are true classes, columns predicted classes."""
    y_true = np.asarray(y_true, np.int64)
    y_pred = np.asarray(y_pred, np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} has labels outside 0..{num_classes - 1}")
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, UAR, macro F1, per-class recall/precision/F1 and the confusion matrix.

    Args:
      y_true, y_pred: int ``(N,)`` class indices.
      class_names: C names; index i names class i.

    Returns:
      A JSON-ready dict. ``uar`` (unweighted average recall, sklearn's
      ``balanced_accuracy_score``) averages recall over the classes present in
      ``y_true``; ``macro_f1`` averages F1 over the classes in ``y_true`` or
      ``y_pred`` (sklearn's ``f1_score(average="macro")``). A class absent from
      ``y_true`` has recall ``None``.
    """
    num_classes = len(class_names)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        rec0 = np.nan_to_num(recall)
        f1 = np.where(precision + rec0 > 0, 2 * precision * rec0 / (precision + rec0), 0.0)
    n = int(cm.sum())
    present = support > 0
    seen = present | (predicted > 0)

    def per_class(values):
        return {name: (None if np.isnan(v) else float(v)) for name, v in zip(class_names, values, strict=True)}

    return {
        "num_examples": n,
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "uar": float(recall[present].mean()) if present.any() else float("nan"),
        "macro_f1": float(f1[seen].mean()) if seen.any() else float("nan"),
        "per_class_recall": per_class(recall),
        "per_class_precision": per_class(precision),
        "per_class_f1": per_class(f1),
        "support": {name: int(s) for name, s in zip(class_names, support, strict=True)},
        "class_names": list(class_names),
        "confusion_matrix": cm.tolist(),
    }


def format_metrics(metrics: dict[str, Any], title: str = "test") -> str:
    """``title: accuracy 0.812, UAR 0.801, macro F1 0.797 (N examples)`` plus per-class recall."""
    m = metrics
    recall = m["per_class_recall"]
    # In class order: metrics.json stores its keys sorted by name.
    order = [name for name in m.get("class_names", ()) if name in recall] or list(recall)
    lines = [
        f"{title}: accuracy {m['accuracy']:.3f}, UAR {m['uar']:.3f}, macro F1 {m['macro_f1']:.3f} "
        f"({m['num_examples']} examples)",
        "  recall per class: "
        + ", ".join(f"{name} {'-' if recall[name] is None else f'{recall[name]:.2f}'}" for name in order),
    ]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(metrics: dict[str, Any], path: str, title: str = "") -> str:
    """Row-normalized colours with raw counts in the cells; written to ``path`` (PNG)."""
    plt = _pyplot()
    cm = np.asarray(metrics["confusion_matrix"], np.float64)
    names = metrics["class_names"]
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 1.0 * len(names) + 1.5))
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", color="white" if rows[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    summary = f"accuracy {metrics['accuracy']:.3f}  UAR {metrics['uar']:.3f}  macro F1 {metrics['macro_f1']:.3f}"
    ax.set_title(f"{title}\n{summary}" if title else summary)
    fig.colorbar(image, ax=ax, fraction=0.046, label="recall (row-normalized)")
    return _save(fig, path)


def _save(fig, path: str) -> str:
    """Write a figure as PNG to ``path`` (local or a ``tf.io.gfile`` URI), whole or not at all; close it."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    storage.write_bytes(path, buffer.getvalue())
    return path


def history_figure(history: list[dict[str, float]], best_epoch: int | None = None, monitor: str = ""):
    """Loss, accuracy and learning rate per epoch (``history.csv`` rows), the best epoch (1-based) marked.

    The best epoch (the one whose weights were kept) is a dashed line on every panel, named with its
    ``monitor`` value; an older ``history.csv`` without ``learning_rate`` leaves that panel empty.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    epochs = [int(r["epoch"]) + 1 for r in history]
    for ax, key in zip(axes, ("loss", "accuracy"), strict=False):
        for prefix, style in (("", "-o"), ("val_", "-s")):
            values = [r.get(prefix + key, np.nan) for r in history]
            ax.plot(epochs, values, style, markersize=3, label=(prefix or "train_") + key)
        ax.set_title(key)
    rates = [r.get("learning_rate", np.nan) for r in history]
    axes[2].plot(epochs, rates, "-o", markersize=3, label="learning_rate (at the epoch's end)")
    if any(np.isfinite(rates)) and np.nanmin(rates) > 0:
        axes[2].set_yscale("log")  # plateau halvings and cosine decay span decades
    axes[2].set_title("learning rate" if any(np.isfinite(rates)) else "learning rate (not logged)")
    if best_epoch is not None:
        row = next((r for r in history if int(r["epoch"]) + 1 == best_epoch), {})
        value = f" ({monitor} {row[monitor]:.3f})" if monitor in row else ""
        for ax in axes:
            ax.axvline(best_epoch, color="tab:green", linestyle="--", linewidth=1, label=f"best epoch {best_epoch}"
                       + value)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def plot_history(history: list[dict[str, float]], path: str, best_epoch: int | None = None,
                 monitor: str = "") -> str:
    """``history_figure`` written to ``path`` (PNG, local or a URI), whole or not at all."""
    return _save(history_figure(history, best_epoch, monitor), path)


SUMMARY_KEYS = ("accuracy", "uar", "macro_f1")


def cross_validation_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-fold test metrics and their mean and (population) standard deviation; folds numbered from 1."""
    rows = [
        {"fold": i + 1, "test_actors": r["actors"]["test"], **{k: r["test"][k] for k in SUMMARY_KEYS}}
        for i, r in enumerate(results)
    ]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in SUMMARY_KEYS}
    std = {k: float(np.std([r[k] for r in rows])) for k in SUMMARY_KEYS}
    return {"folds": rows, "mean": mean, "std": std}


def format_cv_table(summary: dict[str, Any]) -> str:
    """A Markdown table: one row per fold, then mean +/- std."""
    lines = ["| fold | test actors | accuracy | UAR | macro F1 |", "| --- | --- | --- | --- | --- |"]
    for r in summary["folds"]:
        actors = ",".join(str(a) for a in r["test_actors"])
        lines.append(f"| {r['fold']} | {actors} | " + " | ".join(f"{r[k]:.3f}" for k in SUMMARY_KEYS) + " |")
    lines.append(
        "| mean +/- std | | "
        + " | ".join(f"{summary['mean'][k]:.3f} +/- {summary['std'][k]:.3f}" for k in SUMMARY_KEYS)
        + " |"
    )
    return "\n".join(lines)


