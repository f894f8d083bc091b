"""``imagefolder``: train pixelcnn on a folder of your own pictures.

``root`` holds the images (PNG or JPEG; BMP, GIF, WebP and TIFF also work), either directly
(an unlabelled dataset) or in one sub-folder per class (class names are the folder names,
sorted). Every image is resized so its shorter side fits, centre-cropped to ``height x width``
and converted to grey or RGB; transparent pixels become white. A fixed, seeded fraction of the
images is held out as the test split. Files that cannot be decoded are skipped and listed in
one :class:`UnreadableImagesWarning`; only a folder with no readable image is an error.

The decoded images are kept in memory as ``uint8`` tensors, which suits a folder of your own
pictures at the small sizes PixelCNN trains on (10,000 RGB images of 32x32 take 30 MB).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pixelcnn_cli import PICTURE_EXTENSIONS, DataError, ImageData, PictureError, TensorImageDataset, read_picture

__version__ = "0.1.0"

EXTENSIONS = PICTURE_EXTENSIONS
_PIL_MODES = {"grey": "L", "rgb": "RGB"}
_LISTED = 5  # unreadable files named in the warning; the rest are counted


class ImageFolderWarning(UserWarning):
    """Something in the folder was left out (the rest loads)."""


class UnreadableImagesWarning(ImageFolderWarning):
    """Some image files could not be decoded and were skipped."""


class ImageFolderOptions(BaseModel):
    """Options of the ``imagefolder`` dataset (``--dataset-option key=value``)."""

    model_config = ConfigDict(extra="forbid")

    root: str = Field(description="Folder of images, or of one sub-folder of images per class")
    height: int = Field(32, gt=0, le=4096, description="Height the images are cropped to")
    width: int = Field(32, gt=0, le=4096, description="Width the images are cropped to")
    mode: Literal["grey", "rgb"] = Field("rgb", description="grey (1 channel) or rgb (3 channels)")
    test_fraction: float = Field(0.1, gt=0, lt=1, description="Fraction of the images held out as the test split")
    seed: int = Field(0, description="Seed of the fixed train/test split")

    @field_validator("root", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        # `--dataset-option root=2024` arrives as the number 2024
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_spelling(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return {"gray": "grey", "l": "grey", "greyscale": "grey", "grayscale": "grey", "color": "rgb", "colour": "rgb"}.get(value, value)
        return value


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in EXTENSIONS and not path.name.startswith(".")


def _visible(path: Path, top: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(top).parts)


def find_images(root: Path) -> tuple[list[str] | None, list[tuple[Path, int]], list[Path]]:
    """``(class names or None, [(file, label)], loose files ignored)`` for ``root``, in a fixed order."""
    class_dirs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.rglob("*") if _is_image(p) and _visible(p, folder))
        if files:
            class_dirs.append((folder.name, files))
    loose = sorted(p for p in root.iterdir() if _is_image(p))
    if not class_dirs:
        return None, [(path, 0) for path in loose], []
    classes = [name for name, _ in class_dirs]
    files = [(path, label) for label, (_, paths) in enumerate(class_dirs) for path in paths]
    return classes, files, loose


def read_image(path: Path, mode: str, height: int, width: int) -> torch.Tensor:
    """One picture as a ``uint8`` tensor ``C x height x width``, read as every pixelcnn command reads
    pictures (:func:`pixelcnn_cli.read_picture`: shorter side resized, centre cropped)."""
    return read_picture(path, len(_PIL_MODES[mode]), height, width)


class ImageFolder:
    """The ``imagefolder`` dataset plugin."""

    name = "imagefolder"
    description = "Your own pictures: a folder of PNG/JPEG images, optionally one sub-folder per class"
    options_model = ImageFolderOptions

    def load(self, data_dir: Path, download: bool, options: ImageFolderOptions) -> ImageData:
        root = Path(options.root).expanduser()
        if not root.exists():
            raise DataError(f"imagefolder: root folder not found: {root}")
        if not root.is_dir():
            raise DataError(f"imagefolder: root must be a folder of images, not a file: {root}")
        classes, files, loose = find_images(root)
        if not files:
            raise DataError(f"imagefolder: no images ({', '.join(EXTENSIONS)}) in {root} or its sub-folders")
        if loose:
            warnings.warn(
                f"imagefolder: {len(loose)} image(s) directly in {root} ignored: the folder has class sub-folders",
                ImageFolderWarning, stacklevel=2,
            )

        images, labels, unreadable = [], [], []
        for path, label in files:
            try:
                images.append(read_image(path, options.mode, options.height, options.width))
                labels.append(label)
            except PictureError as error:  # none may stop the rest
                unreadable.append((path, error.reason))
        if unreadable:
            listed = ", ".join(f"{p.relative_to(root)} ({why})" for p, why in unreadable[:_LISTED])
            more = f" and {len(unreadable) - _LISTED} more" if len(unreadable) > _LISTED else ""
            warnings.warn(
                f"imagefolder: skipped {len(unreadable)} unreadable file(s) of {len(files)} in {root}: {listed}{more}",
                UnreadableImagesWarning, stacklevel=2,
            )
        if len(images) < 2:
            raise DataError(
                f"imagefolder: {len(images)} readable image(s) in {root}; at least 2 are needed "
                "(one to train on, one held out to test)"
            )

        all_images = torch.stack(images)
        all_labels = torch.tensor(labels, dtype=torch.long)
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(options.seed))
        n_test = min(max(1, round(len(images) * options.test_fraction)), len(images) - 1)
        test, train = order[:n_test], order[n_test:]
        channels = len(_PIL_MODES[options.mode])
        return ImageData(
            channels, options.height, options.width, classes,
            TensorImageDataset(all_images[train], all_labels[train]),
            TensorImageDataset(all_images[test], all_labels[test]),
        )
