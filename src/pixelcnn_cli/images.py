"""Sample grids and picture files (Pillow)."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import torch
from PIL import Image

from .data.quantize import levels_to_uint8
from .errors import DataError, PixelCNNError


def grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: int = 128) -> torch.Tensor:
    """Tile ``uint8`` images ``N x C x H x W`` into one ``C x H' x W'`` picture, ``nrow`` per row."""
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    out = torch.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        out[:, y : y + h, x : x + w] = images[i]
    return out


def to_pil(picture: torch.Tensor, scale: int = 1) -> Image.Image:
    """``uint8`` ``C x H x W`` (C = 1 or 3) -> a Pillow image, enlarged ``scale`` times (nearest)."""
    array = picture.permute(1, 2, 0).contiguous().cpu().numpy()
    image = Image.fromarray(array[:, :, 0], mode="L") if picture.shape[0] == 1 else Image.fromarray(array, mode="RGB")
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return image


def check_png_target(path: str | Path) -> Path:
    """Fail early, with one line, if ``path`` is not a ``.png`` in a folder we can write."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise PixelCNNError(f"output file must end in .png: {path}")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PixelCNNError(f"cannot create folder {folder}: {error.strerror or error}") from None
    if not os.access(folder, os.W_OK):
        raise PixelCNNError(f"cannot write to folder {folder}: permission denied")
    if path.is_dir():
        raise PixelCNNError(f"output path is a folder: {path}")
    return path


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Save atomically (temporary file, then rename), so a reader never sees half a picture."""
    path = check_png_target(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG")
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise PixelCNNError(f"cannot write {path}: {error.strerror or error}") from None
    return path


def save_levels_grid(levels: torch.Tensor, color_levels: int, path: str | Path, nrow: int | None = None) -> Path:
    """Save sampled levels ``N x C x H x W`` as one PNG grid (small images enlarged to stay visible)."""
    pictures = grid(levels_to_uint8(levels.cpu(), color_levels), nrow=nrow)
    scale = max(1, min(4, 256 // max(pictures.shape[1:])))
    return save_png(to_pil(pictures, scale), path)


def fit_pictures(pictures: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """``uint8`` ``N x C x H x W`` pictures resized (and, between grey and RGB, converted) to the model's."""
    if tuple(pictures.shape[1:]) == (channels, height, width):
        return pictures
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    return torch.stack([_from_pil(to_pil(p).convert(mode).resize((width, height), Image.BILINEAR), channels)
                        for p in pictures])


def read_image_files(paths: list[str], channels: int, height: int, width: int) -> torch.Tensor:
    """Image files -> ``uint8`` ``N x C x H x W`` in the model's colours and size."""
    from PIL import Image, UnidentifiedImageError

    mode = "L" if channels == 1 else "RGB"
    pictures = []
    for name in paths:
        try:
            with Image.open(name) as image:
                image.load()
                picture = image.convert(mode)
        except (OSError, UnidentifiedImageError) as error:
            raise DataError(f"--images: cannot read {name} as an image: {getattr(error, 'strerror', None) or error}") from None
        if picture.size != (width, height):
            picture = picture.resize((width, height), Image.BILINEAR)
        pictures.append(_from_pil(picture, channels))
    return torch.stack(pictures)


def _from_pil(image, channels: int) -> torch.Tensor:
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.view(image.height, image.width, channels).permute(2, 0, 1).contiguous()
