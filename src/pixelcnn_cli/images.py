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
    return check_target(path, (".png",))


def check_target(path: str | Path, suffixes: tuple[str, ...]) -> Path:
    """Fail early, with one line, if ``path`` does not end in one of ``suffixes`` or its folder is not writable."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise PixelCNNError(f"output file must end in {' or '.join(suffixes)}: {path}")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise PixelCNNError(f"cannot write {path}: {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PixelCNNError(f"cannot create folder {folder}: {error.strerror or error}") from None
    if path.is_dir():
        raise PixelCNNError(f"output path is a folder: {path}")
    # a file made and removed, not os.access: that says yes to root everywhere, /proc included, and
    # the write would then fail after minutes of sampling
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=f".{path.name}.probe."):
            pass
    except OSError as error:
        raise PixelCNNError(f"cannot write to folder {folder}: {error.strerror or error}") from None
    return path


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Save atomically (temporary file, then rename), so a reader never sees half a picture."""
    return write_atomic(lambda f: image.save(f, format="PNG"), path)


def write_atomic(write, path: str | Path, suffixes: tuple[str, ...] = (".png",)) -> Path:
    """``write(binary_file)`` into ``path`` atomically: a Pillow image, a matplotlib figure, an animation."""
    path = check_target(path, suffixes)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600); a picture is read like any file
        os.replace(tmp, path)
    except OSError as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise PixelCNNError(f"cannot write {path}: {error.strerror or error}") from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_scale(height: int, width: int) -> int:
    """How much to enlarge pictures so one is about 112 screen pixels on its longer side (a 28x28
    digit 4x, 32x32 4x, 64x64 2x), at most 8x."""
    return max(1, min(8, round(112 / max(height, width))))


def code_palette(count: int) -> torch.Tensor:
    """A colour per code, ``count x 3`` ``uint8``: hues a golden angle apart (neighbouring codes look
    unlike, as they mean nothing alike), saturation and brightness varied on other irrational steps."""
    k = torch.arange(count, dtype=torch.float64)
    hue = (k * 0.6180339887498949) % 1.0 * 6.0
    saturation = 0.55 + 0.45 * ((k * 0.7548776662466927) % 1.0)
    value = 0.65 + 0.35 * ((k * 0.5698402909980532) % 1.0)
    chroma = value * saturation
    second = chroma * (1 - ((hue % 2.0) - 1.0).abs())
    zero = torch.zeros_like(hue)
    sector = hue.floor().long().clamp_(max=5)
    # (r, g, b) per sector of the hue circle, before adding value - chroma to each
    table = torch.stack([torch.stack(rgb, dim=-1) for rgb in (
        (chroma, second, zero), (second, chroma, zero), (zero, chroma, second),
        (zero, second, chroma), (second, zero, chroma), (chroma, zero, second))], dim=1)  # (K, 6, 3)
    rgb = table[k.long(), sector] + (value - chroma)[:, None]
    return torch.round(rgb * 255).to(torch.uint8)


def levels_to_pictures(levels: torch.Tensor, color_levels: int, codes: bool = False) -> torch.Tensor:
    """Levels ``N x C x H x W`` -> ``uint8`` pictures: grey or RGB levels scaled to 0..255; codes
    (``N x 1 x H x W``) in the colours of :func:`code_palette` (RGB)."""
    if not codes:
        return levels_to_uint8(levels, color_levels)
    return code_palette(color_levels)[levels[:, 0].long()].permute(0, 3, 1, 2).contiguous()


def save_levels_grid(levels: torch.Tensor, color_levels: int, path: str | Path, nrow: int | None = None,
                     scale: int | None = None, row_names: list[str] | None = None, codes: bool = False) -> Path:
    """Save sampled levels ``N x C x H x W`` as one PNG grid, enlarged to be readable (``scale``)."""
    pictures = levels_to_pictures(levels.cpu(), color_levels, codes)
    return save_png(render_grid(pictures, nrow, scale, row_names), path)


BLANK = 128  # the grid's padding, and pixels not drawn yet in a generation movie


def render_grid(pictures: torch.Tensor, nrow: int | None = None, scale: int | None = None,
                row_names: list[str] | None = None) -> Image.Image:
    """``uint8`` pictures ``N x C x H x W`` as one grid image, ``nrow`` per row, enlarged ``scale``
    times (default: :func:`default_scale`), with ``row_names`` written left of the rows."""
    _, _, height, width = pictures.shape
    scale = scale or default_scale(height, width)
    image = to_pil(grid(pictures, nrow=nrow, pad_value=BLANK), scale)
    if not row_names:
        return image
    from PIL import ImageDraw, ImageFont

    size = max(10, min(28, height * scale // 3))
    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, OSError):  # a Pillow without FreeType: the small bitmap font
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(image)
    margin = 12 + max(int(draw.textlength(name, font=font)) for name in row_names)
    canvas = Image.new(image.mode, (image.width + margin, image.height), 255 if image.mode == "L" else (255, 255, 255))
    canvas.paste(image, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for row, name in enumerate(row_names):
        middle = (2 + row * (height + 2) + height / 2) * scale
        draw.text((6, middle), name, fill=0 if image.mode == "L" else (0, 0, 0), font=font, anchor="lm")
    return canvas


def generation_frames(pictures: torch.Tensor, every: int, nrow: int | None = None, scale: int | None = None,
                      row_names: list[str] | None = None) -> list[Image.Image]:
    """The grid filling in pixel by pixel, in the samplers' raster order: one frame before the first
    pixel, then one every ``every`` pixels, the last the finished grid (as :func:`render_grid` draws it).

    Each pixel's value is fixed once drawn, so masking the finished draw shows exactly what the
    grid held at each moment of the same draw."""
    _, _, height, width = pictures.shape
    pixels = height * width
    order = torch.arange(pixels).view(height, width)
    frames = []
    for done in [*range(0, pixels, max(1, every)), pixels]:
        shown = torch.where(order < done, pictures, torch.full_like(pictures, BLANK))
        frames.append(render_grid(shown, nrow, scale, row_names))
    return frames


def save_animation(frames: list[Image.Image], path: str | Path, frame_ms: int = 80, hold_ms: int = 2500) -> Path:
    """An animated GIF or PNG (by the suffix), looping, the last frame held ``hold_ms``. A GIF frame
    has 256 colours at most (RGB samples are then dithered); an animated PNG is exact."""
    fmt = "GIF" if Path(path).suffix.lower() == ".gif" else "PNG"
    durations = [frame_ms] * (len(frames) - 1) + [hold_ms]

    def write(f) -> None:
        frames[0].save(f, format=fmt, save_all=True, append_images=frames[1:], duration=durations, loop=0)

    return write_atomic(write, path, (".gif", ".png"))


def fit_pictures(pictures: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """``uint8`` ``N x C x H x W`` pictures converted (grey <-> RGB) and fitted to the model's, as
    :func:`read_picture` fits a file."""
    if tuple(pictures.shape[1:]) == (channels, height, width):
        return pictures
    return torch.stack([_fit(to_pil(p), channels, height, width) for p in pictures])


#: What a folder of pictures is searched for (Pillow reads them all).
PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class PictureError(DataError):
    """A file that could not be read as a picture; ``reason`` says why, without the path."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"cannot read {path} as an image: {reason}")
        self.path = Path(path)
        self.reason = reason


_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def read_picture(path: str | Path, channels: int, height: int, width: int) -> torch.Tensor:
    """One picture file as a ``uint8`` tensor ``channels x height x width``.

    The one way pixelcnn reads pictures (the imagefolder plugin, ``sample --complete --images``):
    EXIF orientation applied; transparent pixels composited on white; 16-bit grey scaled to 8 bits
    (65535 -> 255), not clipped; converted to grey or RGB; the shorter side resized to fit and the
    rest centre-cropped, so the aspect ratio is kept. Raises :class:`PictureError`.
    """
    from PIL import ImageOps

    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft("L" if channels == 1 else "RGB", (width, height))  # decode big JPEGs smaller (never below the target)
            image = ImageOps.exif_transpose(image)
            image.load()
            return _fit(image, channels, height, width)
    except Exception as error:  # Pillow raises many kinds for a bad file (OSError, SyntaxError, ValueError...)
        text = (getattr(error, "strerror", None) or str(error)).strip().splitlines()
        reason = (text[0] if text else type(error).__name__).replace(f" {str(path)!r}", "")
        raise PictureError(path, reason) from None


def read_image_files(paths: list[str], channels: int, height: int, width: int) -> torch.Tensor:
    """Picture files -> ``uint8`` ``N x C x H x W`` (see :func:`read_picture`)."""
    return torch.stack([read_picture(name, channels, height, width) for name in paths])


def _fit(image: Image.Image, channels: int, height: int, width: int) -> torch.Tensor:
    from PIL import ImageOps

    if image.mode in _SIXTEEN_BIT:  # 16-bit grey: scale to 8 bits (convert("L") would clip at 255)
        image = image.convert("I")
        if image.getextrema()[1] > 255:  # a 32-bit "I" picture may hold 8-bit values: those stay
            image = image.point(lambda v: v * (255 / 65535) + 0.5)
        image = image.convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (width, height):
        image = ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.view(height, width, channels).permute(2, 0, 1).contiguous()
