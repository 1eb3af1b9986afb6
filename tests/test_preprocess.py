"""Preprocessing of real synthetic clips: trim, frame times, face boxes and crops."""

import os

import numpy as np
import pytest

from ravdess_tfrecords import filenames
from ravdess_tfrecords.conversion import faces, preprocess, synthetic, video


@pytest.fixture(scope="module")
def truth(synthetic_corpus):
    return synthetic.load_truth(synthetic_corpus)


def _clip_path(corpus, clip_id):
    return os.path.join(corpus, f"Actor_{filenames.parse(clip_id).actor:02d}", f"{clip_id}.mp4")


def _check_clip(path, t, settings=None):
    settings = settings or preprocess.Settings()
    clip = preprocess.preprocess_clip(path, settings)
    assert clip.audio.dtype == np.float32 and clip.audio.shape[0] == 24
    assert abs(clip.audio.mean()) < 1e-4 and abs(clip.audio.std() - 1) < 1e-3
    assert clip.video.dtype == np.uint8 and clip.video.shape == (6, 64, 64, 3)
    start, end = clip.interval
    assert abs(start - t.speech[0]) < 0.06, (start, t.speech)
    assert abs(end - t.speech[1]) < 0.06, (end, t.speech)
    times = video.frame_times(start, end, 6)
    for box, when in zip(clip.boxes, times, strict=True):
        true_box = t.face_box(when)
        assert faces.iou(tuple(box), true_box) >= 0.5
        assert faces.iou(faces.square_box(tuple(box), settings.face_margin), true_box) >= 0.5
    return clip


def test_small_clips_trim_and_faces(synthetic_corpus, truth):
    for clip_id in sorted(truth)[:4]:
        _check_clip(_clip_path(synthetic_corpus, clip_id), truth[clip_id])


def test_full_size_clip_is_downscaled_and_boxes_map_back(tmp_path):
    name = filenames.parse("01-01-06-02-02-01-05")
    path = str(tmp_path / f"{name.clip_id}.mp4")
    t = synthetic.make_clip(path, name, width=1280, height=720)
    clip = _check_clip(path, t)
    # Boxes are in 1280x720 pixels although detection ran at 480 wide.
    assert clip.boxes[:, 2].max() > 480


def test_frame_times_spread_inside_interval():
    times = video.frame_times(1.0, 4.0, 6)
    np.testing.assert_allclose(times, [1.25, 1.75, 2.25, 2.75, 3.25, 3.75])
    np.testing.assert_array_equal(video.frame_indices(times, 30.0, 4.0), [37, 52, 67, 82, 97, 112])
    assert video.frame_indices(np.array([10.0]), 30.0, 2.0)[0] == 59  # clamped to the last frame


def test_fill_missing_takes_nearest_face():
    a, b = (0, 0, 10, 10), (5, 5, 15, 15)
    assert faces.fill_missing([None, a, None, None, b, None]) == [a, a, a, b, b, b]
    assert faces.fill_missing([None, None]) is None


def test_square_box_and_crop():
    box = faces.square_box((10, 20, 30, 60), margin=0.25)
    assert box == (-10.0, 10.0, 50.0, 70.0)
    frame = np.zeros((50, 40, 3), np.uint8)
    frame[:, 20:] = 200
    crop = faces.crop_resize(frame, box, 64)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    # Left part black, right part bright; outside the frame edges are replicated.
    assert crop[:, :16].max() == 0 and crop[:, -16:].min() == 200


def test_no_face_clip_fails_or_centre_crops(tmp_path):
    name = filenames.parse("01-01-03-01-01-01-02")
    path = str(tmp_path / f"{name.clip_id}.mp4")
    synthetic.make_clip(path, name, face=False)
    with pytest.raises(preprocess.ClipError) as err:
        preprocess.preprocess_clip(path)
    assert err.value.code == "no_face"
    clip = preprocess.preprocess_clip(path, preprocess.Settings(allow_center_crop=True))
    assert clip.video.shape == (6, 64, 64, 3)
