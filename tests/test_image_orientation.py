"""EXIF orientation: a phone JPEG stores the pixels as the sensor read them and the rotation in its "Orientation"
tag. The one image loader (datamodules.images.load_image) turns it upright, so the datasets, make caption and make
data-info see what every image viewer shows (issue 22, loss 4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from support.data import make_dm

from datamodules import images, records
from datamodules.images import ImageTransform, load_image
from experiments import caption

ROTATE_90 = 6  # EXIF Orientation 6: "rotate 90° clockwise to view"


def phone_jpeg(path: Path, orientation: int = ROTATE_90) -> np.ndarray:
    """A 40x20 (landscape as stored) JPEG, red left half, tagged with ``orientation``; returns the upright
    pixels a viewer shows: 20x40 (portrait), red top half."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=100, subsampling=0)
    return np.rot90(stored, k=-1)  # clockwise


def test_a_jpeg_tagged_rotate_90_is_loaded_upright(tmp_path):
    upright = phone_jpeg(tmp_path / "phone.jpg")
    image = load_image(tmp_path / "phone.jpg")
    assert image.size == (20, 40) and image.mode == "RGB"  # (width, height): portrait, as viewers show it
    pixels = np.asarray(image).astype(int)
    assert np.abs(pixels - upright).max() < 16  # JPEG noise only
    assert pixels[:20, :, 0].mean() > 200 and pixels[20:, :, 0].mean() < 50  # red on top
    # Untagged (orientation 1) and PNG files are unchanged.
    phone_jpeg(tmp_path / "plain.jpg", orientation=1)
    assert load_image(tmp_path / "plain.jpg").size == (40, 20)


def test_every_reader_uses_the_one_loader():
    assert caption.load_image is images.load_image and records.load_image is images.load_image


def test_a_dataset_sample_is_upright(tmp_path):
    upright = phone_jpeg(tmp_path / "before.jpg")
    Image.fromarray(np.ascontiguousarray(upright)).save(tmp_path / "after.png")
    rows = [{"id": "p1", "before": "before.jpg", "after": "after.png", "captions": ["a"], "split": "test"}]
    (tmp_path / "annotations.json").write_text(json.dumps(rows))
    sample = make_dm("pairs", tmp_path, annotations="annotations.json").dataset("test")[0]
    transform = ImageTransform(size=16)
    expected = transform(Image.fromarray(np.ascontiguousarray(upright)))
    assert torch.allclose(sample["before"], expected, atol=0.15)
    assert torch.allclose(sample["before"], sample["after"], atol=0.15)  # the tagged JPEG = the upright PNG
