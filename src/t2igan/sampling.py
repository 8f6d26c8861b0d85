"""Image grids and PNG output shared by the sampler, the callbacks and evaluation."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] floats → uint8 RGB (the round trip every saved sample goes through)."""
    return np.clip(np.rint((np.asarray(images, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, padding: int = 2, background: int = 255) -> np.ndarray:
    """(rows, cols, H, W, 3) or (N, H, W, 3) images in [-1, 1] → one uint8 grid image."""
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[None]
    if images.ndim != 5 or images.shape[-1] != 3:
        raise ValueError(f"Expected images of shape (rows, cols, H, W, 3) or (N, H, W, 3); got {images.shape}.")
    rows, cols, height, width, _ = images.shape
    grid = np.full((rows * (height + padding) + padding, cols * (width + padding) + padding, 3), background, np.uint8)
    pixels = to_uint8(images)
    for r in range(rows):
        for c in range(cols):
            top, left = padding + r * (height + padding), padding + c * (width + padding)
            grid[top : top + height, left : left + width] = pixels[r, c]
    return grid


def save_png(image: np.ndarray, path: str, scale: int = 1) -> str:
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    picture = Image.fromarray(image)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    picture.save(path)
    return path


def interpolation_weights(steps: int) -> np.ndarray:
    """β values from 0 to 1 for caption interpolation (GAN-INT's use case)."""
    if steps < 2:
        raise ValueError(f"Interpolation needs at least 2 steps, got {steps}.")
    return np.linspace(0.0, 1.0, steps, dtype=np.float32)


def stages_side_by_side(stage_images, rows: int, columns: int, size: int) -> np.ndarray:
    """Multi-stage samples as one grid: rows = captions, each stage's ``columns`` images (the same
    noise) side by side, up-sampled (nearest) to the largest ``size``. → (rows, stages·columns, size, size, 3)."""
    import tensorflow as tf

    blocks = [tf.image.resize(images, [size, size], "nearest").numpy().reshape(rows, columns, size, size, 3)
              for images in stage_images]
    return np.concatenate(blocks, axis=1)


def truncate_noise(z: np.ndarray, threshold: float = 2.0, scale: float = 1.0) -> np.ndarray:
    """Map N(0, 1) draws to ``scale`` × N(0, 1) truncated to ±``threshold`` (BigGAN's truncation trick; DF-GAN
    samples with threshold 2, scale 0.88). By the inverse CDF, so the same z always gives the same row."""
    from statistics import NormalDist

    normal = NormalDist()
    low, high = normal.cdf(-threshold), normal.cdf(threshold)
    cdf = np.vectorize(normal.cdf)(np.asarray(z, np.float64))
    u = np.clip(low + cdf * (high - low), 1e-12, 1 - 1e-12)
    return (scale * np.vectorize(normal.inv_cdf)(u)).astype(np.float32)


def heat_overlay(image: np.ndarray, heat: np.ndarray, normalise: str = "max") -> np.ndarray:
    """``image`` (H, W, 3) in [-1, 1] tinted orange where the map ``heat`` (h, w) is high; the map is resized
    to the image (bilinear) and scaled to [0, 1] by its max (``"max"``) or its min..max range (``"range"``).
    The colours are :func:`heat_colour`'s, the same as :func:`colour_scale` shows."""
    import tensorflow as tf

    size = image.shape[:2]
    heat = tf.image.resize(np.asarray(heat, np.float32)[..., None], size, "bilinear").numpy()
    if normalise == "range":
        heat = (heat - heat.min()) / max(float(np.ptp(heat)), 1e-12)
    else:
        heat = heat / max(float(heat.max()), 1e-8)
    return heat_colour(image, heat[..., 0])


# --- Words on pictures: captions over sample rows, word labels and a colour scale on attention maps. ---
# Text is drawn at a fixed pixel size on white strips added around the grid (the image pixels are never
# drawn over); small images are enlarged (nearest) first, so the words stay readable at 32 px.

TEXT_COLOUR = (20, 20, 20)
LABEL_FONT_SIZE = 12
HEAT_TINT = np.array([1.0, 0.6, 0.2])  # the overlay's orange: red strongest, blue weakest
HEAT_BACKGROUND = 0.0  # the colour scale is drawn over mid-grey (0 in [-1, 1])


def heat_colour(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The overlay's colour mapping, shared by :func:`heat_overlay` and :func:`colour_scale`: ``image``
    (..., 3) in [-1, 1] darkened, plus the orange tint scaled by ``heat`` (...) in [0, 1] (0 darkens, 1 is
    full orange)."""
    heat = np.asarray(heat, np.float32)[..., None]
    return np.clip(0.35 * np.asarray(image) + (heat * 2 - 1) * HEAT_TINT * 0.9, -1, 1).astype(np.float32)


def _font(size: int):
    """Pillow's bundled font at ``size`` px (needs FreeType, Pillow ≥ 10.1); else the small bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError, ImportError):  # older Pillow, or no FreeType
        return ImageFont.load_default()


def _printable(text: str, font) -> str:
    from PIL import ImageFont

    if isinstance(font, ImageFont.FreeTypeFont):
        return text
    return text.encode("latin-1", "replace").decode("latin-1")  # the bitmap font knows Latin-1 only


def wrap_text(text: str, font, width: float, max_lines: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` px; a word wider than a line is cut, and what
    does not fit in ``max_lines`` is dropped, the last line ending in "..."."""
    lines, current = [], ""
    for word in _printable(" ".join(str(text).split()), font).split(" "):
        candidate = f"{current} {word}".strip()
        if font.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while len(current) > 1 and font.getlength(current) > width:
            cut = 1
            while cut < len(current) and font.getlength(current[: cut + 1]) <= width:
                cut += 1
            lines.append(current[:cut])
            current = current[cut:]
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and font.getlength(last + "...") > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + "..."
    return lines


def text_strip(width: int, boxes, font_size: int = LABEL_FONT_SIZE, max_lines: int = 2,
               background: int = 255) -> np.ndarray:
    """A white uint8 strip (h, ``width``, 3) with dark text: ``boxes`` are (left, box_width, text, align)
    with align "left", "centre" or "right"; each text is wrapped inside its box. The strip is as tall as
    the most lines any box needs (at least one)."""
    from PIL import Image, ImageDraw

    if width < 1:
        raise ValueError(f"A text strip needs a positive width, got {width}.")
    font = _font(font_size)
    margin = 3
    wrapped = []
    for left, box_width, text, align in boxes:
        if align not in ("left", "centre", "right"):
            raise ValueError(f'align must be "left", "centre" or "right", got {align!r}.')
        wrapped.append((left, box_width, wrap_text(text, font, max(box_width - 2 * margin, 1), max_lines), align))
    line_height = int(round(font_size * 1.3))
    lines = max([1] + [len(box[2]) for box in wrapped])
    picture = Image.new("RGB", (width, lines * line_height + 2 * margin), (background,) * 3)
    draw = ImageDraw.Draw(picture)
    for left, box_width, box_lines, align in wrapped:
        for k, line in enumerate(box_lines):
            length = font.getlength(line)
            x = {"left": left + margin, "centre": left + (box_width - length) / 2,
                 "right": left + box_width - margin - length}[align]
            draw.text((x, margin + k * line_height), line, fill=TEXT_COLOUR, font=font)
    return np.asarray(picture).copy()


def stack_vertically(pictures, background: int = 255) -> np.ndarray:
    """uint8 pictures one above the other, the narrower ones padded on the right with ``background``."""
    width = max(p.shape[1] for p in pictures)
    padded = [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=background) for p in pictures]
    return np.concatenate(padded, axis=0)


def enlarge(images: np.ndarray, scale: int) -> np.ndarray:
    """Images (..., H, W, 3) repeated ``scale`` × along both sides (nearest: no new colours)."""
    if scale <= 1:
        return np.asarray(images)
    return np.repeat(np.repeat(np.asarray(images), scale, axis=-3), scale, axis=-2)


def readable_scale(size: int, smallest: int = 64) -> int:
    """The whole enlargement that makes ``size``-px images at least ``smallest`` px, where labels fit."""
    return max(1, -(-smallest // max(int(size), 1)))


def _cells(line: np.ndarray, count: int, padding: int, what: str, background: int = 255) -> int:
    """The cell size along one line of pixels (L, 3) across a make_grid picture that holds ``count`` cells;
    the padding between them must be ``background`` there (a wrong count rarely lands on it)."""
    length = len(line)
    cell, rest = divmod(length - padding, max(count, 1))
    gaps = [k * cell + j for k in range(count + 1) for j in range(padding)] if count >= 1 else []
    if count < 1 or rest or cell <= padding or (line[gaps] != background).any():
        raise ValueError(f"{count} {what} do not fit a grid {length} px long with padding {padding}: "
                         "pass one label per row/column of the make_grid output.")
    return cell - padding


def _column_boxes(labels, cell_width: int, padding: int, align: str = "centre"):
    return [(padding + c * (cell_width + padding), cell_width, label, align) for c, label in enumerate(labels)]


def _row_bands(grid: np.ndarray, rows: int, padding: int):
    """The grid's top padding, then each row with the padding under it (they add up to the grid)."""
    height = _cells(grid[:, padding], rows, padding, "row labels")  # down the first column of images
    bands = [grid[padding + r * (height + padding): padding + (r + 1) * (height + padding)] for r in range(rows)]
    return grid[:padding], bands


def _interleave(top: np.ndarray, strips, bands) -> np.ndarray:
    """``top``, then each strip above its band; the strips padded (white, below) to one height, so the
    rows stay evenly spaced."""
    height = max(strip.shape[0] for strip in strips)
    parts = [top]
    for strip, band in zip(strips, bands):
        parts += [np.pad(strip, ((0, height - strip.shape[0]), (0, 0), (0, 0)), constant_values=255), band]
    return np.concatenate(parts, axis=0)


def label_rows(grid: np.ndarray, row_labels, padding: int = 2, max_lines: int = 2,
               font_size: int = LABEL_FONT_SIZE) -> np.ndarray:
    """A :func:`make_grid` picture with a white strip above each row holding that row's label (its
    caption), wrapped to the row's width and cut to ``max_lines``. Returns a new, taller uint8 image."""
    row_labels = [str(label) for label in row_labels]
    top, bands = _row_bands(grid, len(row_labels), padding)
    width = grid.shape[1]
    strips = [text_strip(width, [(padding, width - 2 * padding, label, "left")], font_size, max_lines)
              for label in row_labels]
    return _interleave(top, strips, bands)


def label_columns(grid: np.ndarray, column_labels, padding: int = 2, max_lines: int = 2,
                  font_size: int = LABEL_FONT_SIZE) -> np.ndarray:
    """A :func:`make_grid` picture with one strip on top: each label centred over its column (e.g.
    "image", then the words of an attention row)."""
    column_labels = [str(label) for label in column_labels]
    cell_width = _cells(grid[-padding - 1], len(column_labels), padding, "column labels")  # the last image row
    strip = text_strip(grid.shape[1], _column_boxes(column_labels, cell_width, padding), font_size, max_lines)
    return np.concatenate([strip, grid], axis=0)


def label_cells(grid: np.ndarray, cell_labels, padding: int = 2, max_lines: int = 3,
                font_size: int = LABEL_FONT_SIZE - 1) -> np.ndarray:
    """A :func:`make_grid` picture with a strip above each row: each cell's own label (rows × columns
    texts, e.g. every image's caption) over it, shortened to ``max_lines`` lines of the cell's width."""
    cell_labels = [[str(label) for label in row] for row in cell_labels]
    columns = max([len(row) for row in cell_labels] + [1])
    cell_width = _cells(grid[-padding - 1], columns, padding, "column labels")
    top, bands = _row_bands(grid, len(cell_labels), padding)
    strips = [text_strip(grid.shape[1], _column_boxes(labels, cell_width, padding), font_size, max_lines)
              for labels in cell_labels]
    return _interleave(top, strips, bands)


def label_ends(picture: np.ndarray, first: str, last: str, font_size: int = LABEL_FONT_SIZE) -> np.ndarray:
    """A strip on top of ``picture``: ``first`` at the left end, ``last`` at the right end (the two
    captions of an interpolation walk)."""
    width = picture.shape[1]
    half = width // 2
    strip = text_strip(width, [(0, half, f"from: {first}", "left"), (half, width - half, f"to: {last}", "right")],
                       font_size, max_lines=3)
    return np.concatenate([strip, picture], axis=0)


def add_title(picture: np.ndarray, title: str, max_lines: int = 2, font_size: int = LABEL_FONT_SIZE) -> np.ndarray:
    """A strip with ``title`` (wrapped to the picture's width) on top of ``picture``."""
    width = picture.shape[1]
    return np.concatenate([text_strip(width, [(0, width, title, "left")], font_size, max_lines), picture], axis=0)


def colour_bar(length: int) -> np.ndarray:
    """(``length``, 3) uint8: :func:`heat_colour` over mid-grey for heat 0 → 1 (the colours an overlay
    takes from a map's low to its high)."""
    if length < 2:
        raise ValueError(f"A colour bar needs at least 2 pixels, got {length}.")
    heat = np.linspace(0.0, 1.0, length, dtype=np.float32)
    return to_uint8(heat_colour(np.full((length, 3), HEAT_BACKGROUND, np.float32), heat))


SCALE_ENDS = {"max": ("0", "max"), "range": ("min", "max")}  # of each map: the overlay scales every map alone


def colour_scale(width: int, normalise: str = "max", title: str = "attention", bar_height: int = 10,
                 font_size: int = LABEL_FONT_SIZE - 1) -> np.ndarray:
    """A white uint8 strip ``width`` px wide: the :func:`colour_bar` (at most 320 px, centred) with what its
    ends mean under the overlay's ``normalise`` ("max": 0 … max; "range": min … max) written under them."""
    if normalise not in SCALE_ENDS:
        raise ValueError(f'normalise must be one of {sorted(SCALE_ENDS)}, got {normalise!r}.')
    margin = 4
    length = min(width - 2 * margin, 320)
    if length < 2:
        raise ValueError(f"A colour scale needs a picture at least {2 * margin + 2} px wide, got {width}.")
    left = (width - length) // 2
    low, high = SCALE_ENDS[normalise]
    bar = np.full((bar_height + margin, width, 3), 255, np.uint8)
    bar[margin:, left: left + length] = colour_bar(length)[None]
    end = length // 4  # the ends' words are short; the middle half is the title's
    words = text_strip(width, [(left - 3, end, low, "left"), (left + end, length - 2 * end, title, "centre"),
                               (left + length - end + 3, end, high, "right")], font_size, max_lines=1)
    return np.concatenate([bar, words], axis=0)


def with_colour_scale(picture: np.ndarray, normalise: str = "max", title: str = "attention") -> np.ndarray:
    """``picture`` with its :func:`colour_scale` underneath."""
    return np.concatenate([picture, colour_scale(picture.shape[1], normalise, title)], axis=0)


def sample_picture(images: np.ndarray, row_labels=None, title: str | None = None, smallest: int = 64) -> np.ndarray:
    """Samples (rows, columns, H, W, 3) or (N, H, W, 3) in [-1, 1] → a labelled uint8 grid: images enlarged
    (nearest) to at least ``smallest`` px, each row's caption above it (``row_labels``, one per row) and/or
    one ``title`` above all (the caption every row was made from)."""
    images = np.asarray(images)
    images = images[None] if images.ndim == 4 else images
    if images.ndim != 5:
        raise ValueError(f"Expected images of shape (rows, cols, H, W, 3) or (N, H, W, 3); got {images.shape}.")
    grid = make_grid(enlarge(images, readable_scale(images.shape[2], smallest)))
    if row_labels is not None:
        grid = label_rows(grid, row_labels)
    return add_title(grid, title) if title else grid


def attention_picture(rows, column_labels, title: str | None = None, normalise: str = "max",
                      scale_title: str = "attention", smallest: int = 96) -> np.ndarray:
    """Attention rows (a list of (k, H, W, 3) in [-1, 1]: an image, then its overlays) → one labelled uint8
    picture with a colour scale at the bottom. ``column_labels``: one list of texts for every row (written
    once, on top) or one list per row (written over each row; rows may differ in length)."""
    rows = [np.asarray(row) for row in rows]
    if not rows:
        raise ValueError("attention_picture needs at least one row of images.")
    scale = readable_scale(rows[0].shape[1], smallest)
    per_row = bool(column_labels) and not isinstance(column_labels[0], str)
    if per_row:
        if len(column_labels) != len(rows):
            raise ValueError(f"{len(column_labels)} lists of column labels for {len(rows)} rows: give one per row.")
        picture = stack_vertically([label_columns(make_grid(enlarge(row, scale)[None]), labels)
                                    for row, labels in zip(rows, column_labels)])
    else:
        picture = label_columns(make_grid(enlarge(np.stack(rows), scale)), column_labels)
    picture = with_colour_scale(picture, normalise, scale_title)
    return add_title(picture, title) if title else picture


def captioned_grid(images: np.ndarray, captions, columns: int = 8, limit: int = 64, smallest: int = 96) -> np.ndarray:
    """The first ``limit`` images (N, H, W, 3) in [-1, 1], ``columns`` a row (the last row filled with
    white), each with its own caption above it, shortened to the cell's width (``eval.png``)."""
    images = np.asarray(images)[:limit]
    captions = [str(caption) for caption in list(captions)[: len(images)]]
    if images.ndim != 4 or not len(images):
        raise ValueError(f"Expected at least one image of shape (H, W, 3); got an array of shape {images.shape}.")
    if len(captions) != len(images):
        raise ValueError(f"{len(captions)} captions for {len(images)} images: give one caption per image.")
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    blank = rows * columns - len(images)
    images = np.concatenate([images, np.ones((blank, *images.shape[1:]), images.dtype)])
    captions += [""] * blank
    grid = make_grid(enlarge(images.reshape(rows, columns, *images.shape[1:]), readable_scale(images.shape[1], smallest)))
    return label_cells(grid, [captions[r * columns: (r + 1) * columns] for r in range(rows)])
