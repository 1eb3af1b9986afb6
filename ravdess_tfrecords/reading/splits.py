"""Speaker-independent splits: which actors go to train, validation and test.

The single source of truth for every split's actor lists. Shards are written
per actor, so any split is chosen at read time with no new conversion.

Schemes (``split_actors(scheme, ...)``):

- ``speaker`` (default): actors 1-17 train, 18-22 validation, 23-24 test.
- ``kfold``: speaker-independent K-fold (``folds=K``, default 6, ``fold=i``)
  over the actors present, in actor order, cut into K contiguous folds as even
  as possible; fold ``i`` is test, fold ``i+1 (mod K)`` validation, the rest train.
- ``luna5``: the subject-wise 5-fold split of Luna-Jimenez et al. (2021), test
  folds ``LUNA5_FOLDS``; validation and train as in ``kfold``.
- ``sixfold``: 6 folds of 4 actors in actor order (1-4, 5-8, ..., 21-24).
- ``chumachenko``, ``audb``: the published single splits in ``PRESETS`` (see there for the sources).
- ``actors``: explicit lists, ``actors={"train": [...], "validation": [...], "test": [...]}``.

A split that names an unknown actor, or puts one actor in two sets, is a
``ValueError`` naming the actors. Pure Python: no TensorFlow here.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence

from ravdess_tfrecords import labels
from ravdess_tfrecords.errors import UserError

ACTORS: tuple[int, ...] = tuple(range(1, labels.NUM_ACTORS + 1))

SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")

SPEAKER: dict[str, tuple[int, ...]] = {
    "train": tuple(range(1, 18)),
    "validation": tuple(range(18, 23)),
    "test": (23, 24),
}

# Luna-Jimenez, Griol, Callejas, Kleinlein, Montero, Fernandez-Martinez (2021),
# "Multimodal emotion recognition on RAVDESS dataset using transfer learning",
# Sensors 21(22):7665: the test actors of each of their 5 subject-wise folds.
LUNA5_FOLDS: tuple[tuple[int, ...], ...] = (
    (2, 5, 14, 15, 16),
    (3, 6, 7, 13, 18),
    (10, 11, 12, 19, 20),
    (8, 17, 21, 23, 24),
    (1, 4, 9, 22),
)

SIXFOLD_FOLDS: tuple[tuple[int, ...], ...] = tuple(tuple(range(a, a + 4)) for a in range(1, 25, 4))


def _rest(*taken: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(a for a in ACTORS if not any(a in t for t in taken))


# Published single splits, so results compare on the same actors. Sources:
# - chumachenko: Chumachenko, Iosifidis, Gabbouj, "Self-attention fusion for audiovisual emotion
#   recognition with incomplete data", ICPR 2022: the split of the released pretrained models, as
#   stated by the first author in katerynaCh/multimodal-emotion-recognition issue #2.
# - audb: audEERING's "ravdess" database in audb (1.1.0 on), tables emotion.{speech,song}.{train,dev,test}:
#   a gender-balanced split, defined in audeering/datasets datasets/ravdess/1.1.0/create.py.
_CHUMACHENKO_TEST, _CHUMACHENKO_VALIDATION = (5, 10, 16, 19), (11, 13, 18, 22)
_AUDB_DEV, _AUDB_TEST = (16, 17, 19, 20), (21, 22, 23, 24)
PRESETS: dict[str, dict[str, tuple[int, ...]]] = {
    "chumachenko": {"train": _rest(_CHUMACHENKO_TEST, _CHUMACHENKO_VALIDATION),
                    "validation": _CHUMACHENKO_VALIDATION, "test": _CHUMACHENKO_TEST},
    "audb": {"train": _rest(_AUDB_DEV, _AUDB_TEST), "validation": _AUDB_DEV, "test": _AUDB_TEST},
}

DEFAULT_FOLDS = 6
SCHEMES: tuple[str, ...] = ("speaker", "kfold", "luna5", "sixfold", *PRESETS, "actors")
# The schemes a command line can name (``actors`` takes explicit lists instead).
NAMED_SCHEMES: tuple[str, ...] = tuple(s for s in SCHEMES if s != "actors")
FOLD_SCHEMES: tuple[str, ...] = ("kfold", "luna5", "sixfold")


def kfold_folds(folds: int = DEFAULT_FOLDS, actors: Iterable[int] = ACTORS) -> tuple[tuple[int, ...], ...]:
    """Cut ``actors`` (sorted) into ``folds`` contiguous folds, sizes differing by at most 1.

    24 actors and K=5 give folds of 5, 5, 5, 5, 4 actors; K=6 equals ``SIXFOLD_FOLDS``.
    """
    ordered = sorted(set(actors))
    if not 3 <= folds <= len(ordered):
        raise UserError(
            f"kfold needs 3 <= folds <= number of actors ({len(ordered)}) so that train, "
            f"validation and test are all non-empty; got folds={folds}"
        )
    size, extra = divmod(len(ordered), folds)
    out, start = [], 0
    for i in range(folds):
        stop = start + size + (1 if i < extra else 0)
        out.append(tuple(ordered[start:stop]))
        start = stop
    return tuple(out)


def from_folds(test_folds: Sequence[Sequence[int]], fold: int) -> dict[str, tuple[int, ...]]:
    """Fold ``fold`` is test, the next fold (cyclically) validation, the rest train."""
    k = len(test_folds)
    if not 0 <= fold < k:
        raise UserError(f"fold must be in 0..{k - 1} for {k} folds, got {fold}")
    val = (fold + 1) % k
    train = sorted(a for i, f in enumerate(test_folds) if i not in (fold, val) for a in f)
    return {
        "train": tuple(train),
        "validation": tuple(sorted(test_folds[val])),
        "test": tuple(sorted(test_folds[fold])),
    }


def cross_validation(actors: Iterable[int], folds: int, validation: int) -> list[dict[str, tuple[int, ...]]]:
    """Speaker-independent folds with a validation set of ``validation`` actors taken from the training ones.

    ``kfold_folds(folds, actors)`` gives each fold's test actors; its validation actors are the
    ``validation`` actors that follow the test fold (cyclically, in actor order: with RAVDESS's
    alternating ids, one man and one woman for 2), and the rest train. 12 actors, 4 folds, 2:
    3 test, 2 validation, 7 training actors per fold; every actor is tested exactly once.

    Raises:
      UserError: a fold would leave no training actor.
    """
    ordered = sorted(set(actors))
    tests = kfold_folds(folds, ordered)
    out = []
    for test in tests:
        rest = [a for a in ordered[ordered.index(test[-1]) + 1:] + ordered if a not in test]
        rest = list(dict.fromkeys(rest))
        if not 1 <= validation < len(rest):
            raise UserError(f"{len(ordered)} actors in {folds} folds leave {len(rest)} for validation and training: "
                            f"validation must be 1..{len(rest) - 1}, got {validation}")
        val = tuple(sorted(rest[:validation]))
        split = {"train": tuple(a for a in ordered if a not in test and a not in val), "validation": val,
                 "test": tuple(test)}
        validate(split, ordered)
        out.append(split)
    return out


def num_folds(scheme: str, folds: int | None = None) -> int:
    """How many folds a scheme has (1 for ``speaker`` and ``actors``)."""
    if scheme == "kfold":
        return DEFAULT_FOLDS if folds is None else folds
    if scheme == "luna5":
        return len(LUNA5_FOLDS)
    if scheme == "sixfold":
        return len(SIXFOLD_FOLDS)
    if scheme in SCHEMES:
        return 1
    raise UserError(f"unknown split scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")


def validate(split_map: Mapping[str, Iterable[int]], available: Iterable[int] = ACTORS) -> None:
    """Raise ``ValueError`` naming the actors if one is unavailable or in two sets."""
    available = set(available)
    seen: dict[int, str] = {}
    overlap: dict[int, list[str]] = {}
    unknown: dict[int, list[str]] = {}
    for name, actors in split_map.items():
        for actor in actors:
            if isinstance(actor, bool) or not isinstance(actor, numbers.Integral):
                raise UserError(f"split {name!r}: actor ids must be ints, got {actor!r}")
            actor = int(actor)
            if actor not in available:
                unknown.setdefault(actor, []).append(name)
            if actor in seen and seen[actor] != name:
                overlap.setdefault(actor, [seen[actor]]).append(name)
            seen.setdefault(actor, name)
    if overlap:
        where = "; ".join(f"actor {a} in {' and '.join(n)}" for a, n in sorted(overlap.items()))
        raise UserError(f"a speaker-independent split puts each actor in one set only: {where}")
    if unknown:
        missing = ", ".join(str(a) for a in sorted(unknown))
        raise UserError(
            f"split names actors with no shards: {missing} "
            f"(available actors: {', '.join(str(a) for a in sorted(available)) or 'none'})"
        )


def split_actors(
    scheme: str = "speaker",
    *,
    folds: int | None = None,
    fold: int = 0,
    actors: Mapping[str, Iterable[int]] | None = None,
    available: Iterable[int] = ACTORS,
) -> dict[str, tuple[int, ...]]:
    """The actors of each split of a scheme, checked against ``available``.

    Args:
      scheme: one of ``SCHEMES``; ``actors=`` alone implies ``"actors"``.
      folds: K for ``kfold`` (default 6); must be left None for the presets.
      fold: which fold is test, ``0..K-1`` (fold schemes only).
      actors: explicit ``{"train": [...], "validation": [...], "test": [...]}``
        (any subset of split names, lists of ints).
      available: actors that have shards (``kfold`` folds are cut from these).

    Returns:
      ``{split_name: tuple of sorted actor ids}``.

    Raises:
      ValueError: unknown scheme, bad fold, an unavailable actor, or an actor in two sets.
    """
    available = tuple(sorted(set(available)))
    if actors is not None:
        if scheme not in ("speaker", "actors"):
            raise UserError(f"pass either scheme={scheme!r} or actors=..., not both")
        scheme = "actors"
    if scheme not in SCHEMES:
        raise UserError(f"unknown split scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if scheme != "kfold" and folds is not None:
        raise UserError(f"folds= applies to scheme 'kfold' only, not {scheme!r}")
    if scheme not in FOLD_SCHEMES and fold != 0:
        raise UserError(f"fold= applies to {', '.join(FOLD_SCHEMES)} only, not {scheme!r}")

    if scheme == "speaker":
        out = dict(SPEAKER)
    elif scheme in PRESETS:
        out = dict(PRESETS[scheme])
    elif scheme == "kfold":
        out = from_folds(kfold_folds(DEFAULT_FOLDS if folds is None else folds, available), fold)
    elif scheme == "luna5":
        out = from_folds(LUNA5_FOLDS, fold)
    elif scheme == "sixfold":
        out = from_folds(SIXFOLD_FOLDS, fold)
    else:
        if actors is None:
            raise UserError("scheme 'actors' needs actors={'train': [...], 'validation': [...], ...}")
        unknown_names = set(actors) - set(SPLIT_NAMES)
        if unknown_names:
            raise UserError(
                f"unknown split names {sorted(unknown_names)} in actors=; use {', '.join(SPLIT_NAMES)}"
            )
        lists = {name: list(actors[name]) for name in SPLIT_NAMES if name in actors}
        validate(lists, available)  # type errors, unknown actors, overlap, before sorting
        out = {name: tuple(sorted(int(a) for a in ids)) for name, ids in lists.items()}
        for name, ids in out.items():
            if len(set(ids)) != len(ids):
                dup = sorted({a for a in ids if ids.count(a) > 1})
                raise UserError(f"split {name!r} lists actors twice: {dup}")
    validate(out, available)
    return out


def resolve(split: str, split_map: Mapping[str, Sequence[int]]) -> tuple[int, ...]:
    """Actors of ``split``: a split name, ``"a+b"`` for a union, or ``"all"`` for every set.

    Raises:
      ValueError: a split name the map does not define.
    """
    if split == "all":
        return tuple(sorted(a for ids in split_map.values() for a in ids))
    out: list[int] = []
    for name in split.split("+"):
        if name not in split_map:
            raise UserError(
                f"unknown split {name!r}; this scheme defines {', '.join(split_map)} (or 'all', 'a+b')"
            )
        out.extend(split_map[name])
    return tuple(sorted(set(out)))
