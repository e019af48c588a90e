"""Portrait drawing pre/post-processing against hand-computed upstream geometry."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from u2deploy.spec import spec_for_task
from u2deploy.tasks import SaliencyTask, task_for
from u2deploy.tasks.portrait import (
    FaceBox,
    NoFaceFoundWarning,
    PortraitTask,
    crop_face,
    detect_largest_face,
    pad_to_square,  # fmt: skip
)

PORTRAIT = spec_for_task("portrait")


def test_largest_face_on_the_astronaut(photos):
    assert detect_largest_face(photos["astronaut"]) == FaceBox(177, 66, 95, 95)


def test_crop_of_the_astronaut_by_hand(photos):
    # left = 177 - int(0.4*95) = 139, right = 177 + 95 + 38 = 310, top = 66 - int(0.6*95) = 9,
    # bottom = 66 + 95 + int(0.2*95) = 180: a 171x171 crop entirely inside the 512x512 photo.
    crop = crop_face(photos["astronaut"], FaceBox(177, 66, 95, 95))
    np.testing.assert_array_equal(crop, photos["astronaut"][9:180, 139:310])


def test_crop_leaving_the_image_is_padded_white():
    image = np.zeros((100, 100, 3), np.uint8)
    # left = 10 - 16 = -6, right = 66, top = 5 - 24 = -19, bottom = 5 + 40 + 8 = 53
    crop = crop_face(image, FaceBox(10, 5, 40, 40))
    assert crop.shape == (72, 72, 3)
    assert (crop[:19] == 255).all() and (crop[:, :6] == 255).all()
    assert (crop[19:, 6:] == 0).all()


@pytest.mark.parametrize("shape, expected", [((100, 60), (100, 100)), ((60, 100), (100, 100)),
                                             ((61, 60), (61, 60)), ((60, 62), (60, 62)), ((60, 63), (62, 63)),
                                             ((101, 60), (101, 100))])  # fmt: skip
def test_padding_to_square_follows_upstream(shape, expected):
    padded = pad_to_square(np.zeros((*shape, 3), np.uint8))
    assert padded.shape[:2] == expected
    if padded.shape[:2] != shape:
        assert padded.max() == 255  # the padding is white


def test_portrait_statistics_are_the_swapped_ones():
    assert PORTRAIT.input_size == (512, 512) and PORTRAIT.invert_output
    assert PORTRAIT.mean == (0.406, 0.456, 0.485) and PORTRAIT.std == (0.225, 0.224, 0.229)


def test_prepare_normalises_the_resized_crop_by_hand():
    colour = np.array([200, 100, 50], np.uint8)
    image = np.tile(colour, (64, 64, 1))
    x, box = PortraitTask(face=False).prepare(image, PORTRAIT, "fast", "rgb")
    assert box is None and x.shape == (1, 3, 512, 512)
    expected = (colour / 200.0 - np.array(PORTRAIT.mean)) / np.array(PORTRAIT.std)
    np.testing.assert_allclose(x[0, :, 100, 100], expected, rtol=1e-6)


def test_no_face_falls_back_to_the_whole_image_and_says_so():
    blank = np.full((80, 120, 3), 128, np.uint8)
    with pytest.warns(NoFaceFoundWarning, match="no face found"):
        x, box = PortraitTask().prepare(blank, PORTRAIT, "fast", "rgb")
    assert box is None and x.shape == (1, 3, 512, 512)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PortraitTask(face=False).prepare(blank, PORTRAIT, "fast", "rgb")  # asked for: no warning


def test_finish_inverts_and_normalises_at_network_resolution():
    fused = np.linspace(0.2, 0.6, 512 * 512, dtype=np.float32).reshape(1, 1, 512, 512)
    drawing = PortraitTask().finish(fused, PORTRAIT, None, "fast")
    assert drawing.shape == (512, 512)
    assert drawing[0, 0] == pytest.approx(1.0) and drawing[-1, -1] == pytest.approx(0.0)


def test_tasks_are_looked_up_by_name():
    assert isinstance(task_for(PORTRAIT, face=False), PortraitTask)
    assert isinstance(task_for(spec_for_task("human")), SaliencyTask)
