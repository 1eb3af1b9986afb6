r"""Accuracy on real speech: speaker-independent cross-validation of audio-only recipes, side by side.

    python -m tools.bench_accuracy --input=../shared/real-speech                  # the defaults, old and new
    python -m tools.bench_accuracy --input=Audio_Speech_Actors_01-24.zip --variants=default,sample_std
    python -m tools.bench_accuracy --input=DIR --variant='ls:label_smoothing=0.1,optimizer=adamw'
    make bench-accuracy RAVDESS_DIR=../shared/real-speech

A benchmark, not a test (the suite does not run it). It

1. converts the RAVDESS audio-only recordings (modality 03) under ``--input``, a
   folder or zip, with ``python -m ravdess_tfrecords.convert --modality=audio``,
   once per set of converter settings the variants ask for (cached in ``--work_dir``);
2. cuts their actors into ``--folds`` speaker-independent folds
   (``splits.cross_validation``: 12 actors, 4 folds -> 3 test actors a fold, the
   ``--validation_actors`` next ones validation, the rest train; no actor in two sets);
3. trains ``python -m trainers.fit --model=audio`` on every fold of every variant
   (``--seed``; a finished fold is reused: rerunning prints the table again at once);
4. prints, side by side, test accuracy, UAR and macro F1 as mean +/- std over the
   folds for each variant, and the per-class recall of ``default`` (else the first one), then where
   the data came from. ``--output`` also writes the table (markdown) and a JSON record.

A variant is ``NAME:key=value,key=value``: each key a converter setting
(``ravdess_tfrecords.conversion.preprocess.Settings``: ``standardize``, ``hop_length``, ...)
or a flag of ``trainers.fit`` (``label_smoothing``, ``optimizer``, ``augment``,
``class_weight``, ...; a list flag takes ``+`` between its items: ``augment=time_mask+freq_mask``).
``--variants`` names the built-in ones (``VARIANTS``).

Real data stays where it is: ``--work_dir`` (default under the system's temporary
folder) holds the converted features and the runs, outside the repository.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from ravdess_tfrecords import filenames, labels, schema
from ravdess_tfrecords.conversion import sources
from ravdess_tfrecords.conversion.preprocess import LEGACY, Settings
from ravdess_tfrecords.reading import splits

FLAGS = flags.FLAGS

# The built-in variants. "default" is today's defaults; "old" the defaults before the real-speech recipe.
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "old": {"standardize": "sample", "silence_dbfs": str(LEGACY["silence_dbfs"]), "speech_contrast_db": "0"},
    "sample_std": {"standardize": "sample"},
    "coefficient_std": {"standardize": "coefficient"},
}
SETTINGS_KEYS = {f.name for f in dataclasses.fields(Settings)}
METRICS = (("accuracy", "accuracy"), ("uar", "UAR"), ("macro_f1", "macro F1"))


def _define_flags() -> None:
    """Defined by the entry point only: importing this module (its tests do) defines no flag."""
    flags.DEFINE_string("input", None, "RAVDESS audio-only recordings: a folder (Actor_NN/03-*.wav) or zip.")
    flags.DEFINE_string("work_dir", os.path.join(tempfile.gettempdir(), "ravdess-bench-accuracy"),
                        "Converted features and runs (reused by later runs); outside the repository.")
    flags.DEFINE_list("variants", ["old", "default"], f"Built-in variants to compare: {', '.join(VARIANTS)}.")
    flags.DEFINE_multi_string("variant", [], "A variant of your own, NAME:key=value,key=value (see the docstring).")
    flags.DEFINE_integer("folds", 4, "Speaker-independent folds (test actors per fold: actors / folds).")
    flags.DEFINE_integer("validation_actors", 2, "Validation actors per fold, taken from the training ones.")
    flags.DEFINE_integer("seed", 1, "trainers.fit --seed of every fold.")
    flags.DEFINE_list("seeds", None, "Several seeds: every fold trains once per seed (mean and std over all runs).")
    flags.DEFINE_integer("workers", os.cpu_count() or 1, "Converter worker processes.")
    flags.DEFINE_integer("jobs", 2, "Folds trained at once (one trainers.fit process each; one keeps about 1.3 of "
                         "2 cores busy).")
    flags.DEFINE_string("output", None, "Also write the table (.md) and the per-fold record (.json) here.")
    flags.DEFINE_boolean("verbose", False, "Show the trainer's per-epoch lines.")


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named recipe: converter settings and trainer flags (both as strings, as on a command line)."""

    name: str
    convert: dict[str, str]
    fit: dict[str, str]

    def fit_args(self) -> list[str]:
        return [f"--{k}={v.replace('+', ',')}" for k, v in sorted(self.fit.items())]

    def describe(self) -> str:
        items = {**self.convert, **self.fit}
        return ", ".join(f"{k}={v}" for k, v in sorted(items.items())) or "the defaults"


def parse_variant(text: str) -> Variant:
    """``NAME:key=value,key=value`` (or a built-in ``NAME``) -> ``Variant``.

    Raises:
      app.UsageError: no name, a pair without ``=``, or an unknown built-in name.
    """
    name, _, rest = text.partition(":")
    if not name:
        raise app.UsageError(f"variant {text!r} has no name (NAME:key=value,...)")
    if not rest:
        if name not in VARIANTS:
            raise app.UsageError(f"unknown variant {name!r}; built in: {', '.join(VARIANTS)}")
        pairs = VARIANTS[name]
    else:
        pairs = {}
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise app.UsageError(f"variant {name!r}: {item!r} is not key=value")
            pairs[key.strip().lstrip("-")] = value.strip()
    return Variant(name, {k: v for k, v in pairs.items() if k in SETTINGS_KEYS},
                   {k: v for k, v in pairs.items() if k not in SETTINGS_KEYS})


def _digest(items: dict) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:10]


def defaults() -> dict:
    """Today's converter settings and trainer defaults: part of every run's folder name, so a run trained
    under other defaults is never reused for a variant that leaves them unset."""
    from trainers.config import TrainConfig  # TensorFlow: only when runs are named

    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    return {"settings": Settings().to_dict(), "fit": {k: repr(v) for k, v in sorted(fields.items())}}


def _run(cmd: list[str], what: str, quiet: bool) -> None:
    proc = subprocess.run(cmd, capture_output=quiet, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-5:] if quiet else []
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n" + "\n".join(tail))


def convert(input_path: str, work_dir: str, settings: dict[str, str], workers: int, verbose: bool) -> str:
    """The audio-only conversion of ``input_path`` with ``settings`` (cached by them): its directory."""
    effective = {**Settings().to_dict(), **settings}  # a changed default is another conversion
    out = os.path.join(work_dir, f"data-{_digest({k: str(v) for k, v in effective.items()})}")
    if os.path.exists(os.path.join(out, schema.INFO_FILENAME)):  # the converter's cache makes a rerun cheap too
        return out
    cmd = [sys.executable, "-m", "ravdess_tfrecords.convert", f"--input={input_path}", f"--output={out}",
           "--modality=audio", f"--workers={workers}", "--noprogress", *[f"--{k}={v}" for k, v in settings.items()]]
    print(f"converting {input_path} ({', '.join(f'{k}={v}' for k, v in settings.items()) or 'defaults'}) -> {out}",
          flush=True)
    _run(cmd, "the conversion", quiet=not verbose)
    return out


def train_fold(data_dir: str, run_dir: str, fold: dict[str, tuple[int, ...]], variant: Variant, seed: int,
               verbose: bool) -> dict:
    """``trainers.fit --model=audio`` on one fold; its ``metrics.json`` (a finished run is reused)."""
    actors = {k: ",".join(map(str, v)) for k, v in fold.items()}
    cmd = [sys.executable, "-m", "trainers.fit", f"--data_dir={data_dir}", f"--model_dir={run_dir}", "--model=audio",
           f"--train_actors={actors['train']}", f"--validation_actors={actors['validation']}",
           f"--test_actors={actors['test']}", f"--seed={seed}", "--noexport",
           f"--progress={'epoch' if verbose else 'none'}", *variant.fit_args()]
    _run(cmd, f"training {run_dir}", quiet=not verbose)
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def format_table(results: dict[str, list[dict]], variants: list[Variant]) -> str:
    """The markdown table: one row per variant, mean +/- std over its runs of each test metric."""
    lines = ["| variant | " + " | ".join(label for _, label in METRICS) + " | runs | what |",
             "| --- | " + " | ".join("---" for _ in METRICS) + " | --- | --- |"]
    for v in variants:
        runs = results[v.name]
        cells = []
        for key, _ in METRICS:
            m, s = mean_std([r["test"][key] for r in runs])
            cells.append(f"{m:.3f} +/- {s:.3f}")
        lines.append(f"| {v.name} | " + " | ".join(cells) + f" | {len(runs)} | {v.describe()} |")
    return "\n".join(lines)


def format_recall(runs: list[dict], name: str) -> str:
    """Per-class test recall of one variant, mean +/- std over its runs."""
    parts = []
    for c in labels.CLASS_NAMES:
        values = [r["test"]["per_class_recall"][c] for r in runs if r["test"]["per_class_recall"].get(c) is not None]
        m, s = mean_std(values) if values else (float("nan"), 0.0)
        parts.append(f"{c} {m:.2f} +/- {s:.2f}")
    return f"per-class recall of {name!r}: " + ", ".join(parts)


def describe_data(input_path: str, actors: tuple[int, ...], num_clips: int) -> str:
    """Where the data came from: the input, its actors and clips, and the licence line of its README.md."""
    readme = os.path.join(input_path, "README.md")
    first = ""
    if os.path.isfile(readme):
        with open(readme, encoding="utf-8") as f:
            first = f.readline().strip().lstrip("# ")
    what = f" ({first})" if first else ""
    return (f"data: {os.path.abspath(input_path)}{what}: {num_clips} audio-only recordings of actors "
            f"{actors[0]:02d}-{actors[-1]:02d}; RAVDESS, Livingstone & Russo 2018, CC BY-NC-SA 4.0")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.input:
        raise app.UsageError("--input is required: a folder or zip of RAVDESS audio-only recordings "
                             "(the dev set: ../shared/real-speech)")
    variants = [parse_variant(v) for v in FLAGS.variants] + [parse_variant(v) for v in FLAGS.variant]
    if len({v.name for v in variants}) != len(variants):
        raise app.UsageError("two variants share a name")
    found, _ = sources.discover([FLAGS.input])
    recordings = []
    for source in found:
        try:
            name = filenames.parse(source.basename)
        except ValueError:
            continue
        if name.modality == schema.MODALITIES["audio"]:
            recordings.append(name)
    actors = tuple(sorted({n.actor for n in recordings}))
    if not actors:
        raise app.UsageError(f"no RAVDESS audio-only (03-*.wav) recordings under {FLAGS.input}")
    folds = splits.cross_validation(actors, FLAGS.folds, FLAGS.validation_actors)
    seeds = [int(s) for s in FLAGS.seeds] if FLAGS.seeds else [FLAGS.seed]
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    print(f"{len(variants)} variants x {len(folds)} folds x {len(seeds)} seeds, {len(recordings)} recordings of "
          f"{len(actors)} actors; work dir {FLAGS.work_dir}", flush=True)
    data_dirs = {v.name: convert(FLAGS.input, FLAGS.work_dir, v.convert, FLAGS.workers, FLAGS.verbose)
                 for v in variants}
    tasks = [(v, seed, i, fold) for v in variants for seed in seeds for i, fold in enumerate(folds)]
    today = defaults()

    def run(task) -> dict:
        v, seed, i, fold = task
        run_dir = os.path.join(FLAGS.work_dir, "runs", f"{v.name}-{_digest({**v.convert, **v.fit, **today})}",
                               f"{len(folds)}folds-{FLAGS.validation_actors}val", f"seed_{seed}", f"fold_{i + 1}")
        start = time.monotonic()
        metrics = train_fold(data_dirs[v.name], run_dir, fold, v, seed, FLAGS.verbose)
        t = metrics["test"]
        print(f"  {v.name} seed {seed} fold {i + 1}/{len(folds)} (test actors {list(fold['test'])}): "
              f"accuracy {t['accuracy']:.3f}, UAR {t['uar']:.3f}, macro F1 {t['macro_f1']:.3f}, "
              f"best epoch {metrics['best_epoch']} of {metrics['epochs_trained']} "
              f"({time.monotonic() - start:.0f} s)", flush=True)
        return metrics

    # Each fold is its own process: several at once keep the cores busy; results come back in task order.
    with concurrent.futures.ThreadPoolExecutor(max(1, FLAGS.jobs)) as pool:
        all_metrics = list(pool.map(run, tasks))
    results: dict[str, list[dict]] = {v.name: [] for v in variants}
    record = []
    for (v, seed, i, fold), metrics in zip(tasks, all_metrics, strict=True):
        results[v.name].append(metrics)
        t = metrics["test"]
        record.append({"variant": v.name, "seed": seed, "fold": i + 1, "actors": fold,
                       "test": {k: t[k] for k, _ in METRICS}, "recall": t["per_class_recall"],
                       "best_epoch": metrics["best_epoch"], "epochs_trained": metrics["epochs_trained"]})
    table = format_table(results, variants)
    protocol = (f"protocol: speaker-independent {len(folds)}-fold cross-validation over actors "
                f"{', '.join(map(str, actors))} (per fold: {len(folds[0]['test'])} test, "
                f"{FLAGS.validation_actors} validation, {len(folds[0]['train'])} training actors); trainers.fit "
                f"--model=audio, seeds {', '.join(map(str, seeds))}; test metrics, mean +/- std over the runs")
    shown = next((v.name for v in variants if v.name == "default"), variants[0].name)
    text = "\n".join([table, "", format_recall(results[shown], shown), "", protocol,
                      describe_data(FLAGS.input, actors, len(recordings))])
    print("\n" + text)
    if FLAGS.output:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)) or ".", exist_ok=True)
        base = os.path.splitext(FLAGS.output)[0]
        for path, content in ((base + ".md", text + "\n"), (base + ".json", json.dumps(record, indent=1) + "\n")):
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                f.write(content)
            os.replace(path + ".tmp", path)
        print(f"written to {base}.md and {base}.json")
    return 0


if __name__ == "__main__":
    from ravdess_tfrecords import _cli

    _cli.quiet_tensorflow()  # defaults() imports TensorFlow; its start-up lines would bury the table
    _define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
