"""Reading images as viewers display them: EXIF/TIFF orientation, RGBA, palette, 16-bit."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from micronet._io import read_labels, read_rgb
from micronet.errors import InputError


def _displayed() -> np.ndarray:
    """A non-square image, different in every corner: any flip or rotation shows."""
    image = np.full((40, 64, 3), (235, 200, 225), np.uint8)
    image[2:12, 2:20] = (150, 60, 140)  # purple block top-left
    image[30:38, 50:62] = (20, 120, 20)  # green block bottom-right
    return image


# raw pixel order stored in a file whose orientation tag makes viewers show _displayed()
RAW = {1: lambda d: d, 3: lambda d: d[::-1, ::-1], 6: lambda d: np.rot90(d, 1),
       8: lambda d: np.rot90(d, -1), 2: lambda d: d[:, ::-1], 5: lambda d: d.swapaxes(0, 1)}


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize("orientation", sorted(RAW))
def test_exif_orientation_is_applied_like_viewers_do(tmp_path, orientation):
    shown = _displayed()
    raw = np.ascontiguousarray(RAW[orientation](shown))
    png = tmp_path / "x.png"
    Image.fromarray(raw).save(png, exif=_exif(orientation))
    notes: list[str] = []
    np.testing.assert_array_equal(read_rgb(png, notes.append), shown)
    assert bool(notes) == (orientation != 1)
    # the PIL reference: what viewers (and PIL's exif_transpose) show
    from PIL import ImageOps

    np.testing.assert_array_equal(np.asarray(ImageOps.exif_transpose(Image.open(png))), shown)
    tif = tmp_path / "x.tif"
    tifffile.imwrite(tif, raw, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    np.testing.assert_array_equal(read_rgb(tif, notes.append), shown)


def test_rotated_jpeg_is_segmented_in_the_orientation_shown(tmp_path):
    """Labels of a JPEG with EXIF orientation 6 match the upright image, like its twin without
    the tag."""
    from fakes import PurpleGlandModel
    from micronet.infer import Segmenter
    from micronet.infer.batch import segment_inputs

    shown = np.full((120, 200, 3), (235, 200, 225), np.uint8)
    shown[10:50, 10:70] = (150, 60, 140)  # one gland, top-left as displayed
    Image.fromarray(np.ascontiguousarray(np.rot90(shown, 1))).save(
        tmp_path / "rotated.jpg", quality=95, exif=_exif(6))
    Image.fromarray(shown).save(tmp_path / "upright.jpg", quality=95)
    out = tmp_path / "out"
    import inspect

    no_tissue = {"tissue": False} if "tissue" in inspect.signature(Segmenter).parameters else {}
    seg = Segmenter(PurpleGlandModel(64), device="cpu", **no_tissue)
    assert segment_inputs([tmp_path / "rotated.jpg", tmp_path / "upright.jpg"], out, seg,
                          formats=("labels",), echo=lambda line: None) == []
    rotated, upright = (read_labels(out / f"{n}_labels.png") for n in ("rotated", "upright"))
    assert rotated.shape == upright.shape == (120, 200)
    assert rotated[30, 40] > 0 and rotated[100, 180] == 0
    assert np.mean((rotated > 0) == (upright > 0)) > 0.99
    summary = (out / "summary.csv").read_text()
    assert "EXIF orientation 6 applied" in summary


def test_rgba_with_opaque_alpha_is_rgb(tmp_path):
    rgb = _displayed()
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(
        tmp_path / "a.png")
    notes: list[str] = []
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png", notes.append), rgb)
    assert notes == []


def test_transparent_rgba_is_composited_on_white_and_said(tmp_path):
    rgb = _displayed()
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :32] = 0  # left half fully transparent
    alpha[0, 40] = 128
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a.tif", np.dstack([rgb, alpha]), photometric="rgb",
                     extrasamples=[2])
    for path in (tmp_path / "a.png", tmp_path / "a.tif"):
        notes: list[str] = []
        out = read_rgb(path, notes.append)
        assert (out[:, :32] == 255).all() and (out[1:, 32:] == rgb[1:, 32:]).all()
        np.testing.assert_allclose(out[0, 40], rgb[0, 40] / 255 * 128 + 255 * 127 / 255,
                                   atol=1)
        assert len(notes) == 1 and "composited on white" in notes[0] and str(path) in notes[0]


def test_palette_images_are_converted(tmp_path):
    rgb = _displayed()
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(
        tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    out = read_rgb(tmp_path / "p.png")
    np.testing.assert_array_equal(out, np.asarray(Image.open(tmp_path / "p.png").convert("RGB")))
    assert np.abs(out.astype(int) - rgb).max() < 40
    # palette TIFF: indices plus a 16-bit colour map
    index = np.zeros(rgb.shape[:2], np.uint8)
    index[2:12, 2:20] = 1
    cmap = np.zeros((3, 256), np.uint16)
    cmap[:, 0], cmap[:, 1] = (235 * 257, 200 * 257, 225 * 257), (150 * 257, 60 * 257, 140 * 257)
    tifffile.imwrite(tmp_path / "p.tif", index, photometric="palette", colormap=cmap)
    out = read_rgb(tmp_path / "p.tif", lambda line: None)
    assert tuple(out[5, 5]) == (150, 60, 140) and tuple(out[30, 30]) == (235, 200, 225)


def test_16_bit_rgb_is_scaled_to_8_bit(tmp_path):
    rgb16 = (_displayed().astype(np.uint16) * 257)  # 255 -> 65535
    tifffile.imwrite(tmp_path / "d.tif", rgb16, photometric="rgb")
    notes: list[str] = []
    np.testing.assert_array_equal(read_rgb(tmp_path / "d.tif", notes.append), _displayed())
    assert "16-bit" in notes[0]
    import cv2

    cv2.imwrite(str(tmp_path / "d.png"), rgb16[..., ::-1])  # 48-bit PNG
    np.testing.assert_array_equal(read_rgb(tmp_path / "d.png"), _displayed())


@pytest.mark.parametrize("make", ["L", "I;16", "tiff8", "tiff16"])
def test_grayscale_stays_an_error_with_a_hint(tmp_path, make):
    gray = np.full((20, 20), 128, np.uint8)
    if make == "L":
        path = tmp_path / "g.png"
        Image.fromarray(gray).save(path)
    elif make == "I;16":
        path = tmp_path / "g.png"
        Image.fromarray(gray.astype(np.uint16) * 200).save(path)
    else:
        path = tmp_path / "g.tif"
        tifffile.imwrite(path, gray if make == "tiff8" else gray.astype(np.uint16))
    with pytest.raises(InputError) as info:
        read_rgb(path)
    message = str(info.value)
    assert str(path) in message and "grayscale" in message and "colour (RGB)" in message
    assert "\n" not in message
