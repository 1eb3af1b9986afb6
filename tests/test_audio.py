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


def test_nan_or_infinite_samples_are_bad_audio():
    y = (0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    y[800:810], y[1600] = np.nan, np.inf  # before: an IndexError (no frame compares as loud)
    with pytest.raises(ClipError) as err:
        audio.speech_interval(y, 16000, top_db=30, silence_dbfs=-50)
    assert err.value.code == "bad_audio"
    assert err.value.message == "the audio holds 10 NaN and 1 infinite samples (the first at 0.050 s)"


def test_model_input_is_pad_or_cut_with_a_channel_axis():
    x = np.arange(24 * 5, dtype=np.float64).reshape(24, 5)
    out = audio.model_input(x, 7)
    assert out.shape == (24, 7, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], audio.pad_or_cut(x, 7))
    np.testing.assert_array_equal(out[:, :2, 0], 0.0)  # pre-padded


def test_coefficient_standardization_gives_every_coefficient_zero_mean_unit_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (24, 50)) * np.arange(1, 25)[:, None] + 100 * np.arange(24)[:, None]
    x[5] = 3.0  # a constant coefficient becomes zeros, not NaN
    out = audio.standardize(x, "coefficient")
    assert out.dtype == np.float32 and out.shape == x.shape
    rows = [r for r in range(24) if r != 5]
    np.testing.assert_allclose(out[rows].mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(out[rows].std(axis=1), 1, atol=1e-4)
    assert np.all(out[5] == 0)
    whole = audio.standardize(x, "sample")  # one mean and variance: the rows keep their spread apart
    assert abs(float(whole.mean())) < 1e-5 and whole[rows].std(axis=1).max() < 0.1
    with pytest.raises(ValueError, match="standardize"):
        audio.standardize(x, "global")


def test_quiet_speech_is_speech_and_steady_noise_is_silent_at_any_level():
    name = filenames.parse("03-01-05-01-01-01-09")
    y = synthetic.synthesize_voice(name, 3.5, (0.5, 3.0), np.random.default_rng(0), rate=16000)
    for gain_db in (0, -32, -45):  # peaks -8, -40 and -53 dBFS: all speech
        start, end = audio.speech_interval(y * 10 ** (gain_db / 20), 16000, top_db=30, silence_dbfs=-90)
        assert abs(start - 0.5) < 0.06 and abs(end - 3.0) < 0.06
    for level_db in (-20, -70):  # steady noise, loud or soft: no speech in it
        noise = np.random.default_rng(1).normal(0, 10 ** (level_db / 20), 48000).astype(np.float32)
        with pytest.raises(ClipError, match="noise with no speech"):
            audio.speech_interval(noise, 16000, top_db=30, silence_dbfs=-90)
    with pytest.raises(ClipError, match="loudest frame -200 dBFS"):
        audio.speech_interval(np.zeros(16000, np.float32), 16000, top_db=30, silence_dbfs=-90)


def test_settings_of_an_older_writer_keep_what_it_did():
    from ravdess_tfrecords.conversion.preprocess import Settings

    old = Settings.from_dict({"sample_rate": 16000, "silence_dbfs": -50.0})  # schema 3 stored no standardize
    assert old.standardize == "sample" and old.speech_contrast_db == 0.0 and old.silence_dbfs == -50.0
    assert Settings.from_dict(Settings().to_dict()) == Settings()


def test_mfccs_do_not_depend_on_the_machines_blas_threads(tmp_path):
    """OpenBLAS splits the mel projection by its thread count (the machine's cores by default), and the float32
    sums changed with the split: every clip's features differed between 1 and 2 threads. ``mfcc`` uses one."""
    from threadpoolctl import threadpool_limits

    from ravdess_tfrecords.conversion import preprocess

    path = str(tmp_path / "03-01-05-01-01-01-01.wav")
    synthetic.make_wav(path, filenames.parse("03-01-05-01-01-01-01"))
    features = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            features.append(preprocess.preprocess_audio(path).audio)
    assert features[0].dtype == np.float32 and features[0].shape[0] == 24
    assert features[0].tobytes() == features[1].tobytes()
