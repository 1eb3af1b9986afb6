"""Which records a split reads, and in what order: actors, vocal-channel / intensity filters, file interleave.

Shared by the tf.data reader (``builder``, ``pipeline``) and the TF-free data source
(``data_source``), so both pick the same examples in the same order. Pure Python: no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ravdess_tfrecords import labels
from ravdess_tfrecords.errors import UserError
from ravdess_tfrecords.reading import splits
from ravdess_tfrecords.reading.info import DatasetInfo

VOCAL_CHANNELS = tuple(labels.VOCAL_CHANNELS.values())
INTENSITIES = {name: code for code, name in labels.INTENSITIES.items()}
# Shards read at once, one record from each in turn (``pipeline``'s file interleave, ``interleave_order``).
CYCLE_LENGTH = 16


def split_actors(info: DatasetInfo, scheme: str = "speaker", *, folds: int | None = None, fold: int = 0,
                 actors: Mapping[str, Iterable[int]] | None = None) -> dict[str, tuple[int, ...]]:
    """``splits.split_actors`` over the actors with shards in ``info``."""
    return splits.split_actors(scheme, folds=folds, fold=fold, actors=actors, available=info.actors)


def actors_of(info: DatasetInfo, split: str = "train", **scheme_kwargs) -> tuple[int, ...]:
    """Actors of ``split``: ``"train"``, ``"validation"``, ``"test"``, a union ``"a+b"``,
    or ``"all"`` (every actor with shards in ``info``, whatever the scheme)."""
    if split == "all":
        return info.actors
    return splits.resolve(split, split_actors(info, **scheme_kwargs))


def channel_filter(info: DatasetInfo, wanted: str | Iterable[str] | None) -> str | Iterable[str] | None:
    """The vocal-channel filter to apply: ``wanted``, or None when it keeps everything stored (nothing
    to filter); an error if it keeps nothing stored."""
    if wanted is None:
        return None
    stored = info.preprocessing.get("vocal_channels")
    channels = (wanted,) if isinstance(wanted, str) else tuple(wanted)
    if stored is None or set(channels) - set(VOCAL_CHANNELS):
        return wanted  # unknown here, or invalid: normalize_filters reports it
    if not set(channels) & set(stored):
        raise UserError(
            f"vocal_channels={list(channels)} but {info.data_dir!r} was converted with {list(stored)} "
            "only; re-convert with --vocal_channels=speech,song to include song"
        )
    return None if set(stored) <= set(channels) else wanted


def normalize_filters(
    vocal_channels: str | Iterable[str] | None, intensities: int | str | Iterable[int | str] | None
) -> tuple[tuple[str, ...] | None, tuple[int, ...] | None]:
    """``(vocal_channels, intensity codes)`` as tuples (None: no filter), or a ``UserError``."""
    if isinstance(vocal_channels, str):
        vocal_channels = (vocal_channels,)
    if vocal_channels is not None:
        vocal_channels = tuple(vocal_channels)
        bad = [v for v in vocal_channels if v not in VOCAL_CHANNELS]
        if bad or not vocal_channels:
            raise UserError(f"vocal_channels must be a non-empty subset of {VOCAL_CHANNELS}, got {bad or '()'}")
    if isinstance(intensities, int | str):
        intensities = (intensities,)
    if intensities is not None:
        codes = []
        for value in intensities:
            code = INTENSITIES.get(value, value) if isinstance(value, str) else value
            if code not in INTENSITIES.values():
                raise UserError(f"intensities must be 1/'normal' or 2/'strong', got {value!r}")
            codes.append(int(code))
        if not codes:
            raise UserError("intensities must not be empty")
        intensities = tuple(codes)
    return vocal_channels, intensities


def interleave_order(lengths: Sequence[int], cycle_length: int = CYCLE_LENGTH) -> list[tuple[int, int]]:
    """``(file, record)`` in the order of ``tf.data``'s deterministic ``interleave(cycle_length,
    block_length=1)`` over files of ``lengths`` records: the first ``cycle_length`` files in turn,
    one record each; an exhausted file's slot takes the next file when its turn comes again."""
    cycle = max(1, min(len(lengths), cycle_length))
    slots: list[list[int] | None] = [None] * cycle
    out: list[tuple[int, int]] = []
    next_file = opened = i = 0
    while next_file < len(lengths) or opened:
        slot = slots[i]
        if slot is None and next_file < len(lengths):
            slots[i] = [next_file, 0]  # opened on its turn; it yields on this same turn
            next_file, opened = next_file + 1, opened + 1
            continue
        if slot is not None and slot[1] < lengths[slot[0]]:
            out.append((slot[0], slot[1]))
            slot[1] += 1
        elif slot is not None:  # exhausted: found on its turn, which then passes
            slots[i], opened = None, opened - 1
        i = (i + 1) % cycle
    return out
