"""Labelled pictures: captions over sample rows, word labels and a colour scale on attention maps.

Fast (no training): each test builds a picture from random images and checks that the words are there,
that the image pixels are untouched, and that the colour scale shows the overlay's own colours."""

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from t2igan import sampling
from t2igan.sampling import (attention_picture, captioned_grid, colour_bar, colour_scale, heat_overlay, label_cells,
                             label_columns, label_rows, make_grid, sample_picture, to_uint8, wrap_text)

PADDING = 2
DARK = 100  # a text pixel is darker than this on the white strips


def random_images(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (*shape, 3)).astype(np.float32)


def find_block(picture, block, start=0):
    """The first row offset ≥ ``start`` where ``block`` (same width) sits in ``picture`` exactly, or None."""
    for top in range(start, picture.shape[0] - block.shape[0] + 1):
        if np.array_equal(picture[top : top + block.shape[0]], block):
            return top
    return None


def row_bands(grid, rows, size):
    return [grid[PADDING + r * (size + PADDING) : PADDING + (r + 1) * (size + PADDING)] for r in range(rows)]


def has_text(strip):
    return bool((strip.min(axis=-1) < DARK).any())


def test_label_rows_adds_a_strip_over_each_row_and_keeps_the_image_pixels():
    grid = make_grid(random_images(2, 3, 32, 32))
    labelled = label_rows(grid, ["a small red circle", "a large blue square"])
    assert labelled.dtype == np.uint8 and labelled.shape[1] == grid.shape[1]
    assert labelled.shape[0] > grid.shape[0]
    # Every row of images is in the labelled picture, unchanged, in order, with text above it.
    top = 0
    for band in row_bands(grid, 2, 32):
        found = find_block(labelled, band, top)
        assert found is not None and found > top
        assert has_text(labelled[top:found])
        top = found + band.shape[0]
    assert top == labelled.shape[0]  # nothing but the strips was added


def test_different_captions_give_different_strips_with_dark_text():
    grid = make_grid(random_images(1, 4, 32, 32))
    first = label_rows(grid, ["a red circle"])
    second = label_rows(grid, ["a blue square"])
    assert first.shape == second.shape
    strip_height = first.shape[0] - grid.shape[0]
    assert not np.array_equal(first[:strip_height], second[:strip_height])
    assert has_text(first[:strip_height]) and has_text(second[:strip_height])
    assert not has_text(label_rows(grid, [""])[:strip_height])  # the dark pixels are the text


def test_label_rows_wants_one_label_per_row():
    grid = make_grid(random_images(3, 2, 16, 16))
    with pytest.raises(ValueError, match="row labels"):
        label_rows(grid, ["only one", "and two"])


def test_long_captions_are_wrapped_and_shortened():
    font = sampling._font(sampling.LABEL_FONT_SIZE)
    caption = "a small red circle above a large blue square on a green background " * 4
    lines = wrap_text(caption, font, 120, max_lines=2)
    assert len(lines) == 2 and lines[-1].endswith("...")
    assert all(font.getlength(line) <= 120 for line in lines)
    assert wrap_text("supercalifragilisticexpialidocious", font, 40, max_lines=5)[0] != "supercalifragilisticexpialidocious"


def test_word_labels_one_per_column():
    grid = make_grid(random_images(1, 3, 32, 32))
    labelled = label_columns(grid, ["image", "", "circle"])
    strip = labelled[: labelled.shape[0] - grid.shape[0]]
    assert np.array_equal(labelled[strip.shape[0] :], grid)
    columns = [strip[:, PADDING + c * 34 : PADDING + c * 34 + 32] for c in range(3)]
    assert has_text(columns[0]) and not has_text(columns[1]) and has_text(columns[2])
    with pytest.raises(ValueError, match="column labels"):
        label_columns(grid, ["image", "circle"])


def test_cell_labels_give_each_image_its_own_caption():
    grid = make_grid(random_images(2, 2, 32, 32))
    labelled = label_cells(grid, [["red", ""], ["", "blue"]])
    bands = row_bands(grid, 2, 32)
    first, second = find_block(labelled, bands[0]), find_block(labelled, bands[1])
    over_first, over_second = labelled[PADDING:first], labelled[first + bands[0].shape[0] : second]
    left, right = slice(PADDING, PADDING + 32), slice(PADDING + 34, PADDING + 66)
    assert has_text(over_first[:, left]) and not has_text(over_first[:, right])
    assert not has_text(over_second[:, left]) and has_text(over_second[:, right])


def test_colour_scale_shows_the_overlay_colours_from_low_to_high():
    grey = np.full((8, 8, 3), sampling.HEAT_BACKGROUND, np.float32)
    low = to_uint8(heat_overlay(grey, np.zeros((4, 4))))[0, 0]
    high = to_uint8(heat_overlay(grey, np.ones((4, 4))))[0, 0]
    bar = colour_bar(50)
    assert np.array_equal(bar[0], low) and np.array_equal(bar[-1], high)
    scale = colour_scale(200)
    rows_with_both = [y for y in range(scale.shape[0])
                      if (scale[y] == low).all(-1).any() and (scale[y] == high).all(-1).any()]
    assert rows_with_both, "the colour bar is missing from the scale"
    row = scale[rows_with_both[0]]
    coloured = np.flatnonzero((row != 255).any(-1))
    assert np.array_equal(row[coloured[0]], low) and np.array_equal(row[coloured[-1]], high)
    assert has_text(scale[rows_with_both[-1] + 1 :])  # its ends are named
    with pytest.raises(ValueError, match="normalise"):
        colour_scale(200, normalise="log")


def test_heat_overlay_colours_are_unchanged_by_the_shared_mapping():
    image, heat = random_images(16, 16), np.random.default_rng(1).uniform(0, 1, (16, 16)).astype(np.float32)
    expected = np.clip(0.35 * image + (heat[..., None] / heat.max() * 2 - 1) * np.array([1.0, 0.6, 0.2]) * 0.9, -1, 1)
    np.testing.assert_allclose(heat_overlay(image, heat), expected, atol=1e-6)


def test_attention_picture_has_word_labels_and_a_colour_scale():
    image = random_images(32, 32)
    rows = [np.stack([image, heat_overlay(image, np.eye(4)), heat_overlay(image, np.ones((4, 4)))]),
            np.stack([image, heat_overlay(image, np.eye(4))])]
    picture = attention_picture(rows, [["image", "red", "circle"], ["image", "star"]])
    plain = make_grid(sampling.enlarge(rows[0], 3)[None])
    assert find_block(picture, plain[PADDING:-PADDING]) is not None  # the first row, enlarged to 96 px, intact
    low = colour_bar(2)[0]
    assert (picture[-40:] == low).all(-1).any()  # the scale at the bottom
    assert has_text(picture[:find_block(picture, plain[PADDING:-PADDING])])
    shared = attention_picture(rows[:1], ["image", "red", "circle"], title="a red circle")
    assert shared.shape[0] > make_grid(sampling.enlarge(rows[0], 3)[None]).shape[0]


def test_small_samples_are_enlarged_before_labelling():
    images = random_images(2, 4, 32, 32)
    picture = sample_picture(images, row_labels=["a", "b"])
    enlarged = make_grid(np.repeat(np.repeat(images, 2, axis=2), 2, axis=3))
    assert picture.shape[1] == enlarged.shape[1] and picture.shape[0] > enlarged.shape[0]
    tops = [find_block(picture, band) for band in row_bands(enlarged, 2, 64)]
    assert None not in tops and has_text(picture[: tops[0]]) and has_text(picture[tops[0] + 66 : tops[1]])


def test_captioned_grid_fills_rows_of_eight_and_wants_one_caption_per_image():
    images = random_images(10, 16, 16)
    picture = captioned_grid(images, [f"caption {i}" for i in range(10)])
    cell = 16 * 6  # enlarged to at least 96 px
    assert picture.shape[1] == 8 * (cell + PADDING) + PADDING
    assert picture.shape[0] > 2 * (cell + PADDING) + PADDING
    with pytest.raises(ValueError, match="one caption per image"):
        captioned_grid(images, ["too few"])


def test_save_sample_grid_writes_the_caption_above_the_samples(tmp_path, capsys):
    from t2igan.training.harness import save_sample_grid

    images = random_images(3, 32, 32)
    path = save_sample_grid(images, str(tmp_path / "sample.png"), caption="a large blue star")
    saved = np.asarray(Image.open(path))
    plain = make_grid(sampling.enlarge(images, 4)[None])
    top = find_block(saved, plain[PADDING:])
    assert top is not None and top > 0 and has_text(saved[:top])
    assert path in capsys.readouterr().out


def test_sample_grid_callback_labels_each_row_in_the_png_and_tensorboard(tmp_path):
    import tensorflow as tf

    from t2igan.training.callbacks import SampleGrid

    images = random_images(2, 4, 32, 32)
    writer = tf.summary.create_file_writer(str(tmp_path / "logs"))
    callback = SampleGrid(lambda: images, ["a red circle", "a blue square"], str(tmp_path / "samples"), writer)
    callback._model = SimpleNamespace(generator_optimizer=SimpleNamespace(iterations=tf.Variable(5)))
    callback.on_epoch_end(0)
    saved = np.asarray(Image.open(tmp_path / "samples" / "epoch_0001.png"))
    assert np.array_equal(saved, sample_picture(images, row_labels=["a red circle", "a blue square"]))
    assert saved.shape[0] > make_grid(np.repeat(np.repeat(images, 2, axis=2), 2, axis=3)).shape[0]
    logged = [event for event in tf.compat.v1.train.summary_iterator(next(str(p) for p in (tmp_path / "logs").iterdir()))
              for value in event.summary.value if value.tag == "samples/fixed_captions"]
    assert logged, "no TensorBoard image"
    tensor = logged[0].summary.value[0].tensor
    width, height = (int(x) for x in tensor.string_val[:2])
    assert (height, width) == saved.shape[:2]


def test_interpolation_picture_names_both_captions():
    from chapters.ch1_gan_int_cls.sample import interpolation_picture

    images = random_images(2, 8, 32, 32)
    picture = interpolation_picture(images, "a red circle", "a blue square")
    grid = make_grid(sampling.enlarge(images, 2))
    top = find_block(picture, grid[PADDING:])
    assert top is not None
    width = picture.shape[1]
    assert has_text(picture[:top, : width // 4]) and has_text(picture[:top, -width // 4 :])


def test_chapter_attention_pictures_are_labelled():
    from chapters.ch3_attngan.views import word_attention_picture
    from chapters.ch4_dfgan_ratgan.views import discriminator_attention_picture

    images = random_images(2, 32, 32)
    maps = np.random.default_rng(2).uniform(0, 1, (2, 3, 8, 8)).astype(np.float32)
    words = word_attention_picture(images, maps, ["red", "circle", "left"], 32)
    titled = word_attention_picture(images, maps, ["red", "circle", "left"], 32, "a red circle left")
    assert titled.shape[0] > words.shape[0] and np.array_equal(titled[-words.shape[0] :], words)
    assert words.shape[1] == 4 * (96 + PADDING) + PADDING  # the image and three words, enlarged
    first_row = make_grid(sampling.enlarge(images[:1], 3))[PADDING : PADDING + 96, PADDING : PADDING + 96]
    image_top = next(y for y in range(words.shape[0]) if np.array_equal(words[y : y + 96, PADDING : PADDING + 96], first_row))
    for column in range(4):  # "image", then each word over its map
        assert has_text(words[:image_top, PADDING + column * 98 : PADDING + column * 98 + 96])
    d_maps = np.random.default_rng(3).uniform(1, 2, (2, 8, 8)).astype(np.float32)
    on_top = discriminator_attention_picture(images, d_maps, caption="a red circle")
    per_row = discriminator_attention_picture(images, d_maps, row_captions=["a red circle", "a blue square"])
    assert on_top.shape[1] == per_row.shape[1] == 2 * (96 + PADDING) + PADDING
    assert per_row.shape[0] > on_top.shape[0]  # one caption strip per row instead of one title
    for picture in (words, on_top, per_row):
        assert (picture[-40:] == colour_bar(2)[0]).all(-1).any() and (picture[-40:] == colour_bar(2)[1]).all(-1).any()
