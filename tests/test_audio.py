import numpy as np
import pytest

from ravdess_tfrecords import filenames
from ravdess_tfrecords.conversion import audio, synthetic
from ravdess_tfrecords.conversion.errors import ClipError


def test_standardize_zero_mean_unit_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, (24, 80)).astype(np.float32)
    z = audio.standardize(x)
    assert z.dtype == np.float32 and z.shape == x.shape
    assert abs(z.mean()) < 1e-5 and abs(z.std() - 1.0) < 1e-5
    assert np.all(audio.standardize(np.full((24, 5), 3.0)) == 0)


def test_pre_padding_puts_zeros_first_and_real_frames_last():
    x = np.arange(1, 2 * 5 + 1, dtype=np.float32).reshape(2, 5)
    padded = audio.pad_or_cut(x, 8)
    assert padded.shape == (2, 8) and padded.dtype == np.float32
    assert np.all(padded[:, :3] == 0)
    np.testing.assert_array_equal(padded[:, 3:], x)


def test_cut_keeps_the_last_frames():
    x = np.arange(20, dtype=np.float32).reshape(2, 10)
    np.testing.assert_array_equal(audio.pad_or_cut(x, 4), x[:, 6:])
    np.testing.assert_array_equal(audio.pad_or_cut(x, 10), x)


def test_standardized_real_frames_survive_padding():
    rng = np.random.default_rng(1)
    z = audio.standardize(rng.normal(size=(24, 50)))
    padded = audio.pad_or_cut(z, 70)
    real = padded[:, -50:]
    assert abs(real.mean()) < 1e-5 and abs(real.std() - 1) < 1e-4
    assert np.all(padded[:, :20] == 0)


@pytest.mark.parametrize("clip_id", ["01-01-03-01-01-01-01", "01-01-04-02-02-02-02", "01-01-05-01-02-01-03"])
def test_speech_interval_within_60ms_of_truth(clip_id):
    name = filenames.parse(clip_id)
    rng = np.random.default_rng(0)
    speech = (0.55, 3.1)
    y = synthetic.synthesize_voice(name, 3.8, speech, rng, rate=16000)
    start, end = audio.speech_interval(y, 16000, top_db=30, silence_dbfs=-50)
    assert abs(start - speech[0]) < 0.06 and abs(end - speech[1]) < 0.06


def test_silent_audio_is_a_clip_error():
    y = np.random.default_rng(0).normal(0, 1e-4, 16000).astype(np.float32)
    with pytest.raises(ClipError) as err:
        audio.speech_interval(y, 16000, top_db=30, silence_dbfs=-50)
    assert err.value.code == "silent" and "dBFS" in err.value.message


def test_model_input_is_pad_or_cut_with_a_channel_axis():
    x = np.arange(24 * 5, dtype=np.float64).reshape(24, 5)
    out = audio.model_input(x, 7)
    assert out.shape == (24, 7, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], audio.pad_or_cut(x, 7))
    np.testing.assert_array_equal(out[:, :2, 0], 0.0)  # pre-padded
