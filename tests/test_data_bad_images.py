"""Bad images, clear errors: one test per bad image, run against every loader.

Under ``data.on_error=raise`` the error names the file and the pair; under ``skip`` the pair is dropped (an
evaluation split) or substituted (the training split), counted (``dm.skipped``) and a warning gives the count.
Images of odd modes and sizes are converted, not refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.bad_input import ALL_LOADERS, assert_skipped, mini_with_dm, noise_png, pair_ids
from support.data import make_dm
from support.files import write_image
from support.records import make_pairs

from datamodules.contract import check_sample
from datamodules.errors import DataError
from datamodules.images import ImageLoadError, load_image, to_rgb


@pytest.mark.parametrize("name", ALL_LOADERS)
def test_missing_image(tmp_path, caplog, name):
    mini, dm = mini_with_dm(tmp_path, name)
    image = mini.first_image("test")
    image.unlink()
    with pytest.raises(DataError, match="image file not found") as err:
        dm().setup("test")
    assert str(image) in str(err.value) and "pair '" in str(err.value)
    skipping = dm(on_error="skip")
    skipping.setup("test")
    assert all(str(image) not in r.files for r in skipping.dataset("test").records)
    assert list(skipping.reference_captions("test")) == pair_ids(skipping)  # ground truth = what is evaluated
    assert_skipped(skipping, caplog)


@pytest.mark.parametrize("name", ALL_LOADERS)
def test_truncated_image(tmp_path, caplog, name):
    mini, dm = mini_with_dm(tmp_path, name)
    image = mini.first_image("test")
    noise_png(image)
    image.write_bytes(image.read_bytes()[: image.stat().st_size * 6 // 10])
    raising = dm()
    raising.setup("test")  # only existence is checked up front under raise ...
    dataset = raising.dataset("test")
    index = next(i for i, r in enumerate(dataset.records) if str(image) in r.files)
    with pytest.raises(DataError, match="corrupt or truncated") as err:
        dataset[index]  # ... and the load names file and record
    assert str(image) in str(err.value) and dataset.records[index].pair_id in str(err.value)
    # Evaluation splits are decoded in setup under skip: dropped, not substituted.
    skipping = dm(on_error="skip")
    skipping.setup("test")
    assert dataset.records[index].pair_id not in pair_ids(skipping)
    assert_skipped(skipping, caplog)


def test_truncated_training_image_is_substituted_under_skip(tmp_path, caplog):
    mini = make_pairs(tmp_path / "pairs")
    image = mini.first_image("train")
    noise_png(image)
    image.write_bytes(image.read_bytes()[:200])
    dm = make_dm("pairs", mini.root, on_error="skip")
    dm.setup("fit")
    train = dm.dataset("train")
    assert train[0]["pair_id"] == "train_1"  # the next readable pair
    assert "substituted the next readable pair (1 unreadable" in caplog.text and str(image) in caplog.text


@pytest.mark.parametrize("name", ALL_LOADERS)
def test_corrupt_image(tmp_path, name):
    mini, dm = mini_with_dm(tmp_path, name)
    image = mini.first_image("test")
    image.write_bytes(b"this is not an image at all" * 10)
    dataset = dm().dataset("test")
    index = next(i for i, r in enumerate(dataset.records) if str(image) in r.files)
    with pytest.raises(DataError, match="not an image Pillow can read") as err:
        dataset[index]
    assert str(image) in str(err.value)


@pytest.mark.parametrize("name", ALL_LOADERS)
def test_zero_byte_image(tmp_path, caplog, name):
    mini, dm = mini_with_dm(tmp_path, name)
    image = mini.first_image("test")
    image.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty image file \(0 bytes\)") as err:
        dm().setup("test")
    assert str(image) in str(err.value)
    skipping = dm(on_error="skip")
    skipping.setup("test")
    assert_skipped(skipping, caplog)


def odd_images(folder: Path) -> dict[str, Path]:
    """One file per mode that must be converted, not refused."""
    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))
    out = {}
    Image.fromarray(ramp, "L").save(out.setdefault("gray", folder / "gray.png"))
    Image.new("RGBA", (16, 16), (255, 0, 0, 0)).save(out.setdefault("rgba", folder / "rgba.png"))
    Image.fromarray(ramp, "L").convert("P").save(
        out.setdefault("palette", folder / "palette.png"), transparency=0
    )
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(out.setdefault("gif", folder / "anim.gif"), save_all=True, append_images=frames[1:])
    Image.fromarray((ramp.astype(np.uint16) * 257), "I;16").save(out.setdefault("16bit", folder / "deep.png"))
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(out.setdefault("cmyk", folder / "cmyk.jpg"))
    Image.new("1", (16, 16), 1).save(out.setdefault("bilevel", folder / "bw.png"))
    return out


def test_odd_modes_become_rgb_and_16_bit_is_scaled(tmp_path):
    for kind, path in odd_images(tmp_path).items():
        image = load_image(path)
        assert image.mode == "RGB" and image.size == (16, 16), kind
    deep = np.asarray(load_image(tmp_path / "deep.png"))
    assert (
        deep[0, :, 0].tolist() == np.linspace(0, 255, 16, dtype=np.uint8).tolist()
    )  # 65535 -> 255, not clipped
    assert np.asarray(to_rgb(Image.fromarray(np.full((2, 2), 32896, np.int32), "I")))[0, 0, 0] == 128
    assert np.asarray(load_image(tmp_path / "anim.gif"))[0, 0].tolist() == [255, 0, 0]  # the first frame


@pytest.mark.parametrize("name", ALL_LOADERS)
def test_odd_image_modes_load_in_every_loader(tmp_path, name):
    mini, dm = mini_with_dm(tmp_path, name)
    image = mini.first_image("test")
    dataset = dm().dataset("test")
    index = next(i for i, r in enumerate(dataset.records) if str(image) in r.files)
    for kind, path in odd_images(tmp_path / "odd").items():
        image.write_bytes(path.read_bytes())  # whatever the file's name says, Pillow reads the content
        check_sample(dataset[index], where=kind)


@pytest.mark.parametrize("name", ALL_LOADERS)
def test_huge_image_is_refused(tmp_path, monkeypatch, name):
    mini, dm = mini_with_dm(tmp_path, name)
    image = mini.first_image("test")
    write_image(image.with_suffix(".tmp.png"), (300, 200)).replace(image)
    dataset = dm(max_image_pixels=50_000).dataset("test")
    index = next(i for i, r in enumerate(dataset.records) if str(image) in r.files)
    with pytest.raises(DataError, match=r"300x200 = 60,000 pixels, over the limit of 50,000") as err:
        dataset[index]
    assert str(image) in str(err.value)
    # Pillow's own bomb check (for a limit above Pillow's) is reported the same way
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(image, max_pixels=None)


@pytest.mark.parametrize("name", ALL_LOADERS)
def test_before_and_after_of_different_sizes(tmp_path, name):
    mini, dm = mini_with_dm(tmp_path, name)
    dataset = dm().dataset("test")
    record = dataset.records[0]
    write_image(Path(record.before), (40, 10))
    write_image(Path(record.after), (7, 30))
    sample = dataset[0]
    check_sample(sample)
    assert sample["before"].shape == sample["after"].shape == (3, 16, 16)
