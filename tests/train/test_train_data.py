"""Dataset discovery and pairing, bad datasets, and the upstream augmentation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from u2deploy.errors import InputError
from u2deploy.spec import spec_for_task
from u2deploy.train import data
from u2deploy.train.data import EvalTransform, SODDataset, TrainTransform, load_pairs, resize_nearest, scan_dataset


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _dataset(root, images="images", masks="masks", stems=("a", "b"), size=(24, 32)):
    rng = np.random.default_rng(0)
    for stem in stems:
        _write(root / images / f"{stem}.jpg", rng.integers(0, 255, (*size, 3), dtype=np.uint8))
        _write(root / masks / f"{stem}.png", (rng.random(size) > 0.5).astype(np.uint8) * 255)
    return root


@pytest.mark.parametrize("images, masks", [("images", "masks"), ("im", "gt"), ("im_aug", "gt_aug"),
                                           ("DUTS-TR-Image", "DUTS-TR-Mask")])  # fmt: skip
def test_layouts_under_a_root(tmp_path, images, masks):
    root = _dataset(tmp_path / "set", images, masks)
    pairs = load_pairs(root)
    assert [(p.image.name, p.mask.name) for p in pairs] == [("a.jpg", "a.png"), ("b.jpg", "b.png")]
    assert pairs[0].image.parent.name == images


def test_two_folders_and_mixed_extensions(tmp_path):
    _dataset(tmp_path, "photos", "alphas", stems=("x.y",))
    _write(tmp_path / "photos" / "z.png", np.zeros((24, 32, 3), np.uint8))
    _write(tmp_path / "alphas" / "z.bmp", np.zeros((24, 32), np.uint8))
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    report = scan_dataset([tmp_path / "photos", tmp_path / "alphas"])
    assert [p.stem for p in report.pairs] == ["x.y", "z"] and not report.problems
    assert [p.name for p in report.ignored] == ["notes.txt"] and "1 non-image file(s) ignored" in report.summary()


def test_a_root_without_a_known_layout_says_what_is_accepted(tmp_path):
    (tmp_path / "pictures").mkdir()
    with pytest.raises(InputError, match=r"no images and masks sub-folders found; expected one of images/\+masks/"):
        load_pairs(tmp_path)
    with pytest.raises(InputError, match="dataset folder does not exist"):
        load_pairs(tmp_path / "missing")


def test_every_problem_is_listed_and_nothing_is_dropped(tmp_path):
    root = _dataset(tmp_path, stems=("good", "twice", "sized", "broken"))
    _write(root / "images" / "lonely.jpg", np.zeros((24, 32, 3), np.uint8))  # no mask
    _write(root / "masks" / "orphan.png", np.zeros((24, 32), np.uint8))  # no image
    _write(root / "images" / "twice.png", np.zeros((24, 32, 3), np.uint8))  # second image with one stem
    _write(root / "masks" / "sized.png", np.zeros((10, 10), np.uint8))  # size mismatch
    (root / "images" / "broken.jpg").write_bytes(b"this is not a jpeg")
    report = scan_dataset(root)
    assert [p.stem for p in report.pairs] == ["good"]
    assert len(report.problems) == 5
    with pytest.raises(InputError) as error:
        load_pairs(root)
    message = str(error.value)
    for expected in ("5 problem(s)", "images twice.jpg, twice.png share the stem 'twice'", "no mask for image",
                     "lonely.jpg", "no image for mask", "orphan.png", "unreadable", "broken.jpg",
                     "size mismatch: image sized.jpg is 32x24, mask sized.png is 10x10", "u2deploy data check"):
        assert expected in message, expected


def test_empty_folders(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(InputError, match="both folders hold no images"):
        load_pairs(tmp_path)


def test_decode_finds_a_truncated_file_the_header_check_cannot(tmp_path):
    root = _dataset(tmp_path, stems=("a",), size=(64, 64))
    path = root / "images" / "a.jpg"
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])  # header intact, pixels cut
    assert not scan_dataset(root).problems
    assert "unreadable" in scan_dataset(root, decode=True).problems[0]


# ---------------------------------------------------------------------------------------------
# Transforms


def _upstream_reference(image_u8, mask_u8, size):
    """RescaleT + ToTensorLab(flag=0) written with scikit-image as upstream runs them (0.14: no anti-aliasing)."""
    from skimage.transform import resize

    image = resize(image_u8, size, order=1, mode="constant", anti_aliasing=False)
    label = resize(mask_u8, size, order=0, mode="constant", preserve_range=True, anti_aliasing=False)
    image = image / image.max()
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = ((image - mean) / std).transpose(2, 0, 1)
    return expected, (label / label.max())[None]


def test_rescale_and_normalisation_match_upstream():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 200, (50, 70, 3), dtype=np.uint8)
    mask = (rng.random((50, 70)) * 200).astype(np.uint8)
    spec = spec_for_task("sod", input_size=40)
    expected_image, expected_label = _upstream_reference(image, mask, (40, 40))
    chw, label = TrainTransform(spec, crop=None, flip="none")(data.as_float(image), mask.astype(float), rng)
    assert chw.shape == (3, 40, 40) and chw.dtype == np.float32 and label.shape == (1, 40, 40)
    assert np.abs(chw - expected_image).max() < 1e-5
    assert np.abs(label - expected_label).max() < 1e-6
    # the validation transform is the same without randomness, and repeatable
    again = EvalTransform(spec)(data.as_float(image), mask.astype(float))
    assert np.array_equal(again[0], chw) and np.array_equal(again[1], label)


def test_nearest_resize_matches_scikit_image():
    from skimage.transform import resize

    rng = np.random.default_rng(2)
    for shape, size in (((400, 300), (320, 320)), ((57, 91), (64, 64)), ((33, 200), (288, 288))):
        mask = rng.integers(0, 256, shape).astype(np.uint8)
        expected = resize(mask, size, order=0, mode="constant", preserve_range=True, anti_aliasing=False)
        assert np.array_equal(resize_nearest(mask, size), expected)


def test_crop_offsets_are_0_to_31_for_320_to_288():
    """`np.random.randint(0, 320 - 288)` excludes 32, as upstream."""
    grid = np.arange(320 * 320, dtype=np.float64).reshape(320, 320)
    rng = np.random.default_rng(0)
    tops, lefts = set(), set()
    for _ in range(2000):
        cropped, _ = data._random_crop(grid, grid, (288, 288), rng)
        tops.add(int(cropped[0, 0]) // 320)
        lefts.add(int(cropped[0, 0]) % 320)
    assert tops == set(range(32)) and lefts == set(range(32))


class _FixedRng:
    """Stands in for numpy's Generator: a chosen flip draw and crop offsets."""

    def __init__(self, flip_draw: float, offset: int = 0) -> None:
        self.flip_draw, self.offset = flip_draw, offset

    def random(self) -> float:
        return self.flip_draw

    def integers(self, low: int, high: int) -> int:
        return self.offset


@pytest.mark.parametrize("flip, draw, flipped_axis", [("vertical", 0.5, 0), ("vertical", 0.49, None),
                                                      ("horizontal", 0.7, 1), ("none", 0.9, None)])  # fmt: skip
def test_flip_direction_and_probability(flip, draw, flipped_axis):
    """Upstream flips when random() >= 0.5, along axis 0 (upside down); `horizontal` flips axis 1."""
    mask = np.zeros((40, 40))
    mask[:10, :10] = 255  # top-left corner
    image = np.repeat(mask[:, :, None] / 255, 3, axis=2)
    spec = spec_for_task("sod", input_size=40)
    _, label = TrainTransform(spec, crop=None, flip=flip)(image, mask, _FixedRng(draw))
    expected = mask / 255 if flipped_axis is None else np.flip(mask / 255, flipped_axis)
    assert np.array_equal(label[0], expected)


def test_label_scaling_keeps_soft_values_and_survives_empty_masks():
    spec = spec_for_task("sod", input_size=32)
    image = np.full((32, 32, 3), 0.5)
    soft = np.zeros((32, 32))
    soft[4:8, 4:8], soft[10:12, 10:12] = 128, 64
    _, label = EvalTransform(spec)(image, soft)
    assert set(np.unique(label)) == {0.0, 0.5, 1.0}  # divided by its own max (128)
    chw, empty = EvalTransform(spec)(np.zeros((32, 32, 3)), np.zeros((32, 32)))
    assert not np.isnan(empty).any() and not np.isnan(chw).any() and empty.max() == 0


def test_bad_options_raise():
    spec = spec_for_task("sod", input_size=64)
    with pytest.raises(InputError, match="unknown flip 'diagonal'"):
        TrainTransform(spec, flip="diagonal")
    with pytest.raises(InputError, match="crop 72x72 is larger than the rescale size 64x64"):
        TrainTransform(spec, crop=(72, 72))


def test_dataset_items_are_repeatable_per_epoch_and_vary_across_epochs(synth_train):
    pairs = load_pairs(synth_train)
    spec = spec_for_task("sod", input_size=64)
    dataset = SODDataset(pairs, TrainTransform(spec, crop=(56, 56)), seed=3)
    first = [dataset[i]["label"] for i in range(len(dataset))]
    assert all(np.array_equal(a, dataset[i]["label"]) for i, a in enumerate(first))
    dataset.set_epoch(1)
    assert any(not np.array_equal(a, dataset[i]["label"]) for i, a in enumerate(first))
    item = dataset[0]
    assert item["image"].shape == (3, 56, 56) and item["label"].shape == (1, 56, 56) and item["index"] == 0


def test_sampler_shards_are_disjoint_and_resume_part_way():
    from u2deploy.train.distributed import DistInfo, ResumableSampler

    dataset = list(range(8))
    shards = [ResumableSampler(dataset, DistInfo(rank=r, world_size=2), seed=5) for r in range(2)]
    for sampler in shards:
        sampler.set_epoch(3)
    lists = [list(s) for s in shards]
    assert sorted(lists[0] + lists[1]) == dataset and len(lists[0]) == len(lists[1]) == 4
    shards[0].set_start(2)
    assert list(shards[0]) == lists[0][2:] and len(shards[0]) == 2
    shards[1].set_epoch(4)
    assert list(shards[1]) != lists[1] or list(shards[0]) != lists[0]
