"""Plot samples as the pipeline yields them: 6 face frames, the MFCCs, the emotion.

    python -m tools.plot_samples --data_dir=tfrecords --output=samples.png
    python -m tools.plot_samples --data_dir=tfrecords --split=test --augment   # what training sees

One row per sample: its 6 frames (float32 in [0, 1], as the model gets them)
and its padded, standardized MFCCs drawn with ``librosa.display.specshow``; the
row's title names the emotion, the 7-class label, the actor and the clip.
Samples are picked to show different emotions where the split has them.
``--data_dir`` and ``--output`` may be any ``tf.io.gfile`` path (``gs://``,
``file://``); the PNG is written whole or not at all (``storage.atomic_path``).
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

from ravdess_tfrecords import conversion, storage

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Converted shards (the converter's --output).", required=True)
flags.DEFINE_string("output", "samples.png", "PNG to write.")
flags.DEFINE_string("split", "train", "Split to draw from (speaker scheme).")
flags.DEFINE_integer("num_samples", 3, "Rows.")
flags.DEFINE_bool("augment", False, "Show training augmentation (flip, crop, colour, masks).")
flags.DEFINE_integer("seed", 0, "Seed for --augment.")


def pick(dataset, n: int):
    """The first ``n`` examples with distinct labels (then any), as numpy; video None for audio-only data."""
    chosen, seen, spare = [], set(), []
    for inputs, label, meta in dataset.as_numpy_iterator():
        audio, video = inputs if isinstance(inputs, tuple) else (inputs, None)
        for i in range(len(label)):
            item = (audio[i], None if video is None else video[i], int(label[i]), {k: v[i] for k, v in meta.items()})
            (spare if item[2] in seen else chosen).append(item)
            seen.add(item[2])
            if len(chosen) == n:
                return chosen
    return (chosen + spare)[:n]


def plot(samples, info, output: str) -> None:
    """Draw ``samples`` (``pick``'s) and write the PNG to ``output`` (local or a URI), whole or not at all."""
    import librosa.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ravdess_tfrecords import labels

    sr = int(info.preprocessing.get("sample_rate", 16000))
    hop = int(info.preprocessing.get("hop_length", 512))
    frames = 0 if samples[0][1] is None else samples[0][1].shape[0]  # an audio-only dataset: the MFCCs alone
    fig = plt.figure(figsize=(2.0 * frames + (7 if frames else 11), 2.6 * len(samples)), constrained_layout=True)
    rows = fig.subfigures(len(samples), 1, squeeze=False)[:, 0]
    for row, (audio, video, label, meta) in zip(rows, samples, strict=True):
        emotion = labels.EMOTIONS[int(meta["emotion"])]
        intensity = {1: "normal", 2: "strong"}.get(int(meta["intensity"]), "?")
        row.suptitle(
            f"{emotion.upper()}  (label {label}: {labels.CLASS_NAMES[label]}; {intensity} intensity)   "
            f"actor {int(meta['actor'])}, {meta['vocal_channel'].decode()}, {meta['clip_id'].decode()}",
            fontsize=11, fontweight="bold",
        )
        axes = row.subplots(1, frames + 1, gridspec_kw={"width_ratios": [1] * frames + [3.2]}, squeeze=False)[0]
        for f in range(frames):
            axes[f].imshow(video[f])
            axes[f].set_title(f"frame {f + 1}", fontsize=8)
            axes[f].axis("off")
        real = min(int(meta["audio_frames"]), audio.shape[1])
        # Coefficient 0 (energy) dwarfs the rest; clip the colours at the 95th percentile of |x|
        # over the real frames so the other coefficients' structure shows.
        limit = float(np.percentile(np.abs(audio[:, audio.shape[1] - real :, 0]), 95)) or 1.0
        mesh = librosa.display.specshow(audio[:, :, 0], x_axis="time", sr=sr, hop_length=hop, ax=axes[-1],
                                        cmap="coolwarm", vmin=-limit, vmax=limit)
        axes[-1].set_title(f"24 MFCCs (standardized), {audio.shape[1] - real} zero-padded frames first; "
                           f"colours clipped at +-{limit:.1f}", fontsize=8)
        axes[-1].set_yticks([0.5, 6.5, 12.5, 18.5, 23.5], ["0", "6", "12", "18", "23"])
        axes[-1].set_ylabel("MFCC")
        row.colorbar(mesh, ax=axes[-1], fraction=0.05)
    try:
        with storage.atomic_path(output) as tmp:  # a temporary file, then a rename or an upload
            fig.savefig(tmp, format="png", dpi=90)
    finally:
        plt.close(fig)


def main(argv: list[str]) -> None:
    del argv
    conversion.require_extra("tools.plot_samples", modules=("librosa",))  # librosa.display draws the MFCCs
    import ravdess_tfrecords as rt

    builder = rt.Builder(FLAGS.data_dir)
    ds = builder.as_dataset(FLAGS.split, batch_size=32, training=FLAGS.augment, with_metadata=True,
                            seed=FLAGS.seed if FLAGS.augment else None, drop_remainder=False)
    samples = pick(ds, FLAGS.num_samples)
    if not samples:
        raise app.UsageError(f"split {FLAGS.split!r} of {FLAGS.data_dir} is empty")
    plot(samples, builder.info, storage.expand(FLAGS.output))
    print(f"wrote {FLAGS.output}: {len(samples)} samples from {FLAGS.split!r}: "
          + ", ".join(f"{s[3]['clip_id'].decode()}" for s in samples))


if __name__ == "__main__":
    from ravdess_tfrecords import _cli

    _cli.quiet_tensorflow()  # TensorFlow's start-up lines on a machine without a GPU
    _cli.run(main)
