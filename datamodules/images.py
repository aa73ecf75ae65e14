"""Image preprocessing shared by every DataModule: PIL image -> normalised ``(3, H, W)`` tensor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class ImageTransform:
    """Resize to a square ``size`` (bicubic, no crop: change captioning must see the whole frame, as
    CLIP4IDC does), convert to RGB, scale to [0, 1] and normalise with the backbone's ``mean``/``std``."""

    size: int
    mean: Sequence[float] = (0.5, 0.5, 0.5)
    std: Sequence[float] = (0.5, 0.5, 0.5)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if image.mode != "RGB":
            image = image.convert("RGB")
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.Resampling.BICUBIC)
        array = np.asarray(image, dtype=np.float32) / 255.0  # (H, W, 3)
        tensor = torch.from_numpy(array).permute(2, 0, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return ((tensor - mean) / std).contiguous()

    def denormalize(self, tensor: torch.Tensor) -> torch.Tensor:
        """Inverse of the normalisation: ``(..., 3, H, W)`` -> values in [0, 1]."""
        mean = torch.tensor(self.mean, dtype=tensor.dtype, device=tensor.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=tensor.dtype, device=tensor.device).view(3, 1, 1)
        return (tensor * std + mean).clamp(0, 1)
