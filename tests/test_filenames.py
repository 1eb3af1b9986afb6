import pytest

from ravdess_tfrecords import filenames, labels


def test_parse_full_name():
    clip = filenames.parse("/data/Actor_12/01-02-05-02-01-02-12.mp4")
    assert clip == filenames.ClipName(1, 2, 5, 2, 1, 2, 12)
    assert clip.clip_id == "01-02-05-02-01-02-12"
    assert clip.gender == "female" and filenames.parse("01-01-01-01-01-01-07.wav").gender == "male"
    assert clip.vocal_channel_name == "song"
    assert clip.emotion_name == "angry"
    assert clip.label() == 3 and clip.label(8) == 4


@pytest.mark.parametrize(
    "name, field",
    [
        ("hello.mp4", "found 1"),
        ("01-01-01-01-01-01.mp4", "found 6"),
        ("01-01-0x-01-01-01-01.mp4", "emotion field '0x'"),
        ("04-01-01-01-01-01-01.mp4", "modality code 04"),
        ("01-03-01-01-01-01-01.mp4", "vocal_channel code 03"),
        ("01-01-09-01-01-01-01.mp4", "emotion code 09"),
        ("01-01-03-03-01-01-01.mp4", "intensity code 03"),
        ("01-01-03-01-03-01-01.mp4", "statement code 03"),
        ("01-01-03-01-01-03-01.mp4", "repetition code 03"),
        ("01-01-03-01-01-01-25.mp4", "actor code 25"),
        ("01-01-03-01-01-01-00.mp4", "actor code 00"),
        ("01-01-01-02-01-01-01.mp4", "neutral has no strong intensity"),
        ("01-01-3-01-01-01-01.mp4", "emotion field '3'"),
    ],
)
def test_bad_names_quote_name_and_field(name, field):
    with pytest.raises(ValueError) as err:
        filenames.parse(name)
    assert repr(name) in str(err.value)
    assert field in str(err.value)


def test_label_map_merges_neutral_and_calm():
    assert [labels.label_from_emotion(c) for c in range(1, 9)] == [0, 0, 1, 2, 3, 4, 5, 6]
    assert [labels.label_from_emotion(c, 8) for c in range(1, 9)] == list(range(8))
    assert labels.CLASS_NAMES[0] == "neutral/calm" and len(labels.CLASS_NAMES) == labels.NUM_CLASSES == 7
    assert labels.class_names(8) == tuple(labels.EMOTIONS.values())
    for code in range(3, 9):  # each merged-space name is the corpus name of its code
        assert labels.CLASS_NAMES[labels.label_from_emotion(code)] == labels.EMOTIONS[code]
    with pytest.raises(ValueError, match="1..8"):
        labels.label_from_emotion(9)
    with pytest.raises(ValueError, match="7 or 8"):
        labels.class_names(6)
