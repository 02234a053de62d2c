"""Image folders: ``root/<class name>/<image>``, one subfolder per class (the layout of
torchvision's ImageFolder). Decoded with Pillow; all images must share one size."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hostside.errors import UserError
from hostside.safe_io import check_file
from hostside.train.datasets import Dataset, make_dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def read_image_folder(path: Path, source: str) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    if not path.is_dir():
        raise UserError(f"{path}: an image dataset is a folder with one subfolder of images per class")
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"{path}: no class subfolders; put the images of each class in root/<class>/")
    files, labels = [], []
    for label, folder in enumerate(classes):
        # check_file: a FIFO named like an image would block Pillow's open forever.
        images = sorted(check_file(p, "image") for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise UserError(
                f"{folder}: class folder has no images ({', '.join(IMAGE_SUFFIXES)}); add some or remove it"
            )
        files += images
        labels += [label] * len(images)
    decoded = []
    for file in files:
        try:
            with Image.open(file) as img:
                decoded.append(_pixels(img))
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"{file}: cannot decode image ({exc}); remove or replace it") from None
    rgb = any(a.ndim == 3 for a in decoded)
    arrays = [np.repeat(a[:, :, None], 3, axis=2) if rgb and a.ndim == 2 else a for a in decoded]
    size = arrays[0].shape
    for file, a in zip(files, arrays):
        if a.shape != size:
            raise UserError(
                f"{file}: size {a.shape[1]}x{a.shape[0]} differs from {size[1]}x{size[0]} of {files[0].name}; "
                f"resize all images to one size"
            )
    x = np.stack(arrays).astype(np.float32)
    x = x.transpose(0, 3, 1, 2) if rgb else x[:, None]
    return make_dataset(path.name, x, np.asarray(labels, dtype=np.int64), [c.name for c in classes], str(path), source)


def _pixels(img) -> np.ndarray:
    """Raw pixel values: (H, W) for gray images (16-bit and float kept as they are),
    (H, W, 3) for colour; an alpha channel is dropped."""
    if img.mode in ("L", "I;16", "I", "F"):
        return np.asarray(img)
    if img.mode == "1" or (img.mode == "P" and _gray_palette(img)):
        return np.asarray(img.convert("L"))
    return np.asarray(img.convert("RGB"))


def _gray_palette(img) -> bool:
    rgb = np.asarray(img.convert("RGB"))
    return bool((rgb == rgb[:, :, :1]).all())
