"""Speaker-independent splits: presets, K-fold, explicit lists and their errors."""

from __future__ import annotations

import itertools

import pytest

from ravdess_tfrecords.reading import splits

ALL = set(range(1, 25))


def _all_fold_maps(scheme, folds=None, available=splits.ACTORS):
    k = splits.num_folds(scheme, folds)
    return [splits.split_actors(scheme, folds=folds, fold=i, available=available) for i in range(k)]


def test_speaker_split_is_the_notebooks():
    s = splits.split_actors("speaker")
    assert s == {"train": tuple(range(1, 18)), "validation": (18, 19, 20, 21, 22), "test": (23, 24)}


def test_presets_match_the_published_folds():
    assert splits.LUNA5_FOLDS[0] == (2, 5, 14, 15, 16)
    assert splits.LUNA5_FOLDS[4] == (1, 4, 9, 22)
    assert splits.SIXFOLD_FOLDS == ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16),
                                    (17, 18, 19, 20), (21, 22, 23, 24))
    luna = splits.split_actors("luna5", fold=1)
    assert luna["test"] == (3, 6, 7, 13, 18)
    assert luna["validation"] == (10, 11, 12, 19, 20)  # the next fold


@pytest.mark.parametrize(
    "scheme,folds", [("speaker", None), ("luna5", None), ("sixfold", None)]
    + [("kfold", k) for k in (None, 3, 4, 5, 7, 8, 12, 24)]
)
def test_no_actor_in_two_sets_and_every_actor_used(scheme, folds):
    for m in _all_fold_maps(scheme, folds):
        sets = [set(v) for v in m.values()]
        for a, b in itertools.combinations(sets, 2):
            assert not a & b
        assert set().union(*sets) == ALL
        assert all(sets), f"an empty set in {m}"


@pytest.mark.parametrize("scheme,folds", [("luna5", None), ("sixfold", None)]
                         + [("kfold", k) for k in (None, 3, 5, 7, 24)])
def test_every_actor_tested_exactly_once_across_folds(scheme, folds):
    maps = _all_fold_maps(scheme, folds)
    tested = [a for m in maps for a in m["test"]]
    assert sorted(tested) == sorted(ALL)
    validated = [a for m in maps for a in m["validation"]]
    assert sorted(validated) == sorted(ALL)


def test_kfold_default_is_six_contiguous_folds_and_follows_available_actors():
    assert splits.kfold_folds() == splits.SIXFOLD_FOLDS
    assert [len(f) for f in splits.kfold_folds(5)] == [5, 5, 5, 5, 4]
    avail = (1, 2, 3, 5, 8, 13)
    maps = _all_fold_maps("kfold", 3, available=avail)
    assert sorted(a for m in maps for a in m["test"]) == list(avail)
    assert maps[0] == {"train": (8, 13), "validation": (3, 5), "test": (1, 2)}


def test_explicit_actor_lists():
    m = splits.split_actors(actors={"train": [3, 1, 2], "test": (4,)})
    assert m == {"train": (1, 2, 3), "test": (4,)}
    assert splits.resolve("train+test", m) == (1, 2, 3, 4)
    assert splits.resolve("all", m) == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="'validation'"):
        splits.resolve("validation", m)


def test_overlap_is_an_error_naming_the_actors():
    with pytest.raises(ValueError, match=r"actor 5 in train and test.*actor 7 in train and validation"):
        splits.split_actors(actors={"train": [1, 5, 7], "validation": [7], "test": [5]})
    with pytest.raises(ValueError, match=r"twice: \[2\]"):
        splits.split_actors(actors={"train": [1, 2, 2]})


def test_unknown_or_missing_actor_is_an_error_naming_the_actors():
    with pytest.raises(ValueError, match=r"no shards: 25, 31"):
        splits.split_actors(actors={"train": [1, 25], "test": [31]})
    # The speaker preset needs 18..24, which a 1..17 conversion lacks.
    with pytest.raises(ValueError, match=r"no shards: 18, 19, 20, 21, 22, 23, 24"):
        splits.split_actors("speaker", available=range(1, 18))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"scheme": "nope"}, "unknown split scheme 'nope'"),
        ({"scheme": "kfold", "folds": 2}, "3 <= folds"),
        ({"scheme": "kfold", "folds": 25}, "3 <= folds"),
        ({"scheme": "luna5", "fold": 5}, r"fold must be in 0..4"),
        ({"scheme": "luna5", "folds": 5}, "folds= applies to scheme 'kfold' only"),
        ({"scheme": "speaker", "fold": 1}, "fold= applies to"),
        ({"scheme": "luna5", "actors": {"train": [1]}}, "either scheme='luna5' or actors"),
        ({"actors": {"training": [1]}}, "unknown split names"),
        ({"actors": {"train": ["1"]}}, "must be ints"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        splits.split_actors(**kwargs)


def test_published_presets_pin_their_actor_lists():
    """The peers' splits, as their sources state them (see ``splits.PRESETS``)."""
    import ravdess_tfrecords as rt

    chumachenko = rt.split_actors("chumachenko")
    assert chumachenko["test"] == (5, 10, 16, 19) and chumachenko["validation"] == (11, 13, 18, 22)
    assert chumachenko["train"] == (1, 2, 3, 4, 6, 7, 8, 9, 12, 14, 15, 17, 20, 21, 23, 24)
    audb = rt.split_actors("audb")
    assert audb["train"] == (*range(1, 16), 18)
    assert audb["validation"] == (16, 17, 19, 20) and audb["test"] == (21, 22, 23, 24)
    for preset in splits.PRESETS.values():  # every actor in exactly one set
        assert sorted(a for ids in preset.values() for a in ids) == list(splits.ACTORS)
    # Named on every command line, and a preset has no folds.
    assert {"chumachenko", "audb"} <= set(splits.NAMED_SCHEMES) and "actors" not in splits.NAMED_SCHEMES
    with pytest.raises(ValueError, match="fold= applies"):
        splits.split_actors("audb", fold=1)


def test_cross_validation_takes_validation_actors_from_the_training_ones():
    folds = splits.cross_validation(range(1, 13), 4, 2)
    assert [f["test"] for f in folds] == [(1, 2, 3), (4, 5, 6), (7, 8, 9), (10, 11, 12)]
    assert [f["validation"] for f in folds] == [(4, 5), (7, 8), (10, 11), (1, 2)]
    for f in folds:
        assert len(f["train"]) == 7 and not set(f["train"]) & (set(f["test"]) | set(f["validation"]))
        assert set(f["train"]) | set(f["test"]) | set(f["validation"]) == set(range(1, 13))
        assert {a % 2 for a in f["validation"]} == {0, 1}  # one man, one woman
    with pytest.raises(ValueError, match="validation must be"):
        splits.cross_validation(range(1, 13), 4, 9)
