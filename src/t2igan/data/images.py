"""Reading images safely and the official CUB bounding-box crop.

``read_image`` always returns an RGB ``uint8`` array, whatever the file's mode
(CUB has grayscale JPEGs, COCO the odd CMYK or palette image), and turns a
corrupt or truncated file into a ``ValueError`` that says which file and what
to do — instead of a Pillow error deep inside a ``tf.data`` worker.
EXIF orientation is ignored, as in the official loaders.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        # Palette images may carry transparency; resolve it through RGBA.
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
        if image.mode == "RGB":
            return image
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Composite on white: dropping alpha would expose arbitrary colours
        # stored under fully transparent pixels.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # 16-bit / 32-bit grayscale: scale to 0..255 rather than clip.
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            high = max(float(values.max()), 1.0)
        else:
            high = 255.0 if values.max() <= 255 and not image.mode.startswith("I;16") else 65535.0
        gray = np.clip(values / high * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([gray] * 3, axis=-1), "RGB")
    return image.convert("RGB")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file fully into an RGB array of shape (H, W, 3), dtype uint8.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is corrupt, truncated or not an image.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()  # force the full decode so truncation is caught here
            rgb = _to_rgb(image)
            array = np.asarray(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(
            f"Cannot decode image {path}: {type(error).__name__}: {error}. The file is corrupt or "
            "truncated; re-download it, or remove its name from the split list (e.g. "
            "train/filenames.pickle or train.txt) so it is skipped."
        ) from error
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"Image {path} decoded to an unexpected shape {array.shape}; re-save it as RGB PNG or JPEG.")
    return array


def cub_bbox_crop(image: np.ndarray, bbox: Sequence[float]) -> np.ndarray:
    """The official CUB crop (StackGAN, StackGAN++, AttnGAN, DF-GAN ``get_imgs``).

    A square of side ``2·r``, ``r = int(0.75·max(w, h))``, centred on the box
    and clipped at the image border (so it may be non-square near an edge)::

        cx = int((2x + w) / 2);  cy = int((2y + h) / 2)
        rows    [max(0, cy - r), min(H, cy + r))
        columns [max(0, cx - r), min(W, cx + r))

    Args:
        image: (H, W) or (H, W, C) array.
        bbox: ``(x, y, width, height)`` in pixels, as in ``bounding_boxes.txt``.
    """
    if len(bbox) != 4:
        raise ValueError(f"A CUB bounding box is (x, y, width, height); got {tuple(bbox)!r}.")
    x, y, width, height = (float(value) for value in bbox)
    if width <= 0 or height <= 0:
        raise ValueError(f"Bounding box {tuple(bbox)!r} has a non-positive width or height.")
    image_height, image_width = image.shape[:2]
    radius = int(max(width, height) * 0.75)
    center_x = int((2 * x + width) / 2)
    center_y = int((2 * y + height) / 2)
    top, bottom = max(0, center_y - radius), min(image_height, center_y + radius)
    left, right = max(0, center_x - radius), min(image_width, center_x + radius)
    if bottom <= top or right <= left:
        raise ValueError(
            f"Bounding box {tuple(bbox)!r} lies outside the {image_width}x{image_height} image; "
            "check that bounding_boxes.txt matches images.txt."
        )
    return image[top:bottom, left:right]
