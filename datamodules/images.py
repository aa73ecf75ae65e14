"""Image loading and preprocessing shared by every DataModule.

* :func:`load_image` opens one file safely: a missing, empty, truncated or corrupt file, or one larger than the
  decompression-bomb limit, raises :class:`ImageLoadError` naming the file; every mode Pillow can open
  (grayscale, RGBA, palette, GIF, CMYK, 16-bit, float) comes back as 8-bit RGB, turned upright as its EXIF
  orientation says. Every reader of images goes through it: the datasets, ``make caption``, ``make data-info``.
* :class:`ImageTransform` turns an RGB image into the backbone's normalised ``(3, H, W)`` tensor, by the kit's own
  pipeline (stretch to the square) or, for a LLaVA-OneVision folder's tower, by its image processor's (pad to a
  square in the mean colour, then resize), as ``mdp.ImageSpec.pipeline`` says; or, for a transformers model whose own
  processor prepares images (zero-shot ``make eval MODEL=``), leaves it as loaded: an 8-bit ``(3, H, W)`` tensor.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

# 8192 x 8192. The real benchmarks top out at a few megapixels; anything far above this is a mistake or a
# decompression bomb (a small file that inflates to gigabytes), so it is refused before it is decoded.
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192


class ImageLoadError(Exception):
    """An image cannot be used; ``path`` is the file, ``reason`` says why, ``str()`` says both."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit ``RGB``.

    ``convert("RGB")`` is right for 8-bit modes (alpha is dropped, as every anchor implementation does), but it
    *clips* high-bit-depth modes: a 16-bit PNG (``I;16``) would come out almost all white. Those are scaled.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        array = np.asarray(image).astype(np.float64)
        if mode.startswith("I;16"):
            array = array / 257.0  # 0..65535 -> 0..255 exactly (65535 / 257 = 255)
        elif mode == "I":
            # 32-bit int: Pillow also uses it for 16-bit grayscale; scale only when values exceed 8 bits.
            array = array / 257.0 if array.max(initial=0) > 255 else array
        elif array.max(initial=0) <= 1.0:  # "F": float images in [0, 1]
            array = array * 255.0
        gray = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")
        return gray.convert("RGB")
    if mode == "P" and "transparency" in image.info:
        # Palette transparency must go through RGBA, or Pillow warns on every load.
        image = image.convert("RGBA")
    return image.convert("RGB")


def upright_copy(image: Image.Image) -> Image.Image:
    """A copy of ``image`` turned as its EXIF ``Orientation`` tag says (phone and camera JPEGs store the pixels as
    the sensor read them and the rotation in the tag; every viewer applies it, so the model must see it too).
    A damaged EXIF block is ignored: the pixels are used as stored."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # Pillow raises various errors for malformed EXIF data
        return image.copy()


def load_image(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """Open ``path`` fully (so truncation is caught here, not later) and return it as 8-bit RGB.

    Raises:
        ImageLoadError: the file is missing, empty, not an image, truncated/corrupt, or has more than
            ``max_pixels`` pixels (``None`` = no limit beyond Pillow's own).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageLoadError(path, "image file not found") from None
    except OSError as err:
        raise ImageLoadError(path, f"cannot read image file ({err.strerror or err})") from None
    if size == 0:
        raise ImageLoadError(path, "empty image file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow warns (not raises) between its limit and twice it; our own limit below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageLoadError(
                        path,
                        f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
                        f"{max_pixels:,} (data.max_image_pixels; a decompression bomb or a mistake?)",
                    )
                image.seek(0)  # animated GIF/PNG: the first frame
                image.load()
                # A new image, detached from the file handle the with-block closes.
                upright = upright_copy(image)
                return upright if upright.mode == "RGB" else to_rgb(upright)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageLoadError(path, f"refused as a decompression bomb ({err})") from None
    except UnidentifiedImageError:
        raise ImageLoadError(path, "not an image Pillow can read (corrupt or wrong format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        # Truncated data ("image file is truncated"), broken chunks/CRCs, bad headers.
        raise ImageLoadError(path, f"corrupt or truncated image ({err})") from None


@dataclass(frozen=True)
class ImageTransform:
    """An RGB image -> the backbone's normalised ``(3, size, size)`` float32 tensor, by ``pipeline``:

    * ``kit`` (every backbone but a LLaVA-OneVision folder's): resize to the square (Pillow bicubic, no crop:
      change captioning must see the whole frame, as CLIP4IDC does; a non-square photo is stretched), scale to
      [0, 1], normalise with ``mean``/``std``.
    * ``llava_onevision``: what LLaVA-OneVision's image processor does to each image of a several-image prompt
      (:func:`llava_onevision_pixels`), so that the kit started from such a folder sees what it was trained on.
    * ``processor``: nothing: the image as loaded, 8-bit ``(3, H, W)`` (``uint8``) at its own size, for a model
      whose own processor prepares it (:mod:`lightning_modules.transformers_captioner`). Generated data (the
      embedded benchmark) is rendered at ``size``.

    With ``kit`` and ``llava_onevision``, before and after images of different sizes each become the same square,
    so a pair always stacks.
    """

    size: int
    mean: Sequence[float] = (0.5, 0.5, 0.5)
    std: Sequence[float] = (0.5, 0.5, 0.5)
    pipeline: str = "kit"  # mdp.ImageSpec.pipeline

    def __post_init__(self) -> None:
        if self.pipeline not in PIPELINES:
            raise ValueError(
                f"ImageTransform.pipeline must be one of {list(PIPELINES)}, got {self.pipeline!r}"
            )

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if image.mode != "RGB":
            image = to_rgb(image)
        if self.pipeline == "llava_onevision":
            return llava_onevision_pixels(image, size=self.size, mean=self.mean, std=self.std)
        if self.pipeline == "processor":
            return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.Resampling.BICUBIC)
        array = np.asarray(image, dtype=np.float32) / 255.0  # (H, W, 3)
        tensor = torch.from_numpy(array).permute(2, 0, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return ((tensor - mean) / std).contiguous()

    def denormalize(self, tensor: torch.Tensor) -> torch.Tensor:
        """Inverse of the normalisation: ``(..., 3, H, W)`` -> values in [0, 1] (``processor``: 8 bits / 255)."""
        if self.pipeline == "processor":
            return tensor.float() / 255.0
        mean = torch.tensor(self.mean, dtype=tensor.dtype, device=tensor.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=tensor.dtype, device=tensor.device).view(3, 1, 1)
        return (tensor * std + mean).clamp(0, 1)


def llava_onevision_pixels(
    image: Image.Image, *, size: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """An RGB image as transformers' ``LlavaOnevisionImageProcessor`` (its default, torchvision backend) prepares
    each image of a prompt with several images (no AnyRes tiles), the same operations in the same order:

    1. pad the 8-bit image to a square of its longer side, centred (an odd extra pixel goes right / bottom), in
       the mean colour ``int(m * 255)`` per channel (127 for SigLIP's 0.5);
    2. resize the 8-bit square to ``size`` x ``size``: bicubic with antialiasing, rounded back to 8 bits;
    3. rescale by 1/255 and normalise in one step: ``(x - 255 * mean) / (255 * std)`` in float32.

    A stretched resize instead gives other features on every non-square photo (the benchmarks' are not square).
    """
    from torchvision.transforms.v2 import functional as tvF

    pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()  # (3, H, W)
    height, width = pixels.shape[-2:]
    if height != width:
        side = max(height, width)
        left, top = (side - width) // 2, (side - height) // 2
        padding = [left, top, side - width - left, side - height - top]
        pixels = tvF.pad(pixels, padding=padding, fill=[int(m * 255) for m in mean])
    pixels = tvF.resize(pixels, [size, size], interpolation=tvF.InterpolationMode.BICUBIC, antialias=True)
    scale = 1.0 / RESCALE_FACTOR  # transformers fuses rescale into the normalisation this way
    return tvF.normalize(pixels.float(), torch.tensor(mean) * scale, torch.tensor(std) * scale)


# mdp.ImageSpec.pipeline's values (mdp.backbone.PIPELINES; the data side does not import the model library).
PIPELINES = ("kit", "llava_onevision", "processor")
RESCALE_FACTOR = 1 / 255  # LLaVA-OneVision's rescale_factor (checked when its folder is read: mdp.hf_adapter)
