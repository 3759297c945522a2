"""Tile grids, reflect-padded reads and strip-wise blending."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from micronet.infer.tiling import (
    StripBlender,
    TileGrid,
    aligned_starts,
    gaussian_window,
    read_tile,
    reflect_indices,
    spread_starts,
)


@given(n=st.integers(1, 12), lo=st.integers(-60, 0), hi=st.integers(1, 60))
def test_reflect_indices_match_repeated_np_pad(n, lo, hi):
    values = np.arange(n)
    before, after = -lo, max(hi - n, 0)
    expected = np.pad(values, (before, after), mode="reflect") if n > 1 else \
        np.zeros(n + before + after, int)
    got = values[reflect_indices(np.arange(lo, n + after), n)]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (7, 5), (40, 33)])
@pytest.mark.parametrize("pos", [(-20, -9), (0, 0), (3, -2), (30, 25)])
def test_read_tile_equals_padded_crop(rng, shape, pos):
    image = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
    size, pad = 16, 64
    big = image[reflect_indices(np.arange(-pad, shape[0] + pad), shape[0])][
        :, reflect_indices(np.arange(-pad, shape[1] + pad), shape[1])]
    y, x = pos
    np.testing.assert_array_equal(read_tile(image, y, x, size),
                                  big[y + pad:y + pad + size, x + pad:x + pad + size])


@given(length=st.integers(1, 3000), tile=st.integers(16, 600), frac=st.floats(0, 0.5))
def test_spread_starts_cover_padded_extent(length, tile, frac):
    overlap = int(tile * frac)
    pad = overlap // 2
    starts = spread_starts(length, tile, overlap, pad)
    assert np.all(np.diff(starts) > 0)
    if length + 2 * pad <= tile:
        assert len(starts) == 1
        assert starts[0] <= 0 and starts[0] + tile >= length
        return
    assert starts[0] == -pad and starts[-1] + tile == length + pad
    assert np.all(np.diff(starts) <= tile - overlap)
    if len(starts) > 2:  # the fewest tiles: one fewer would need a step above tile - overlap
        assert (length + 2 * pad - tile) / (len(starts) - 2) > tile - overlap


@given(lo=st.integers(-100, 500), span=st.integers(1, 400), origin=st.integers(-60, 0),
       step=st.integers(8, 100), extra=st.integers(0, 50))
def test_aligned_starts_are_every_grid_tile_touching_the_range(lo, span, origin, step, extra):
    tile = step + extra
    hi = lo + span
    starts = aligned_starts(lo, hi, origin, step, tile)
    assert np.all((starts - origin) % step == 0)
    every = origin + step * np.arange(-50, 200)
    touching = every[(every + tile > lo) & (every < hi)]
    np.testing.assert_array_equal(starts, touching)


def test_gaussian_window_shape_and_floor():
    w = gaussian_window(64)
    assert w.shape == (64, 64) and w.dtype == np.float32
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert w.max() == pytest.approx(1.0, abs=1e-3) and w.min() >= 1e-6


def _blend(field, grid, height, width):
    """Blend crops of a global field through StripBlender; collect emitted rows."""
    chans = field.shape[0]
    out = np.full((chans, height, width), np.nan, np.float32)
    calls = []

    def emit(row, block):
        assert np.all(np.isnan(out[:, row:row + block.shape[1]])), "row emitted twice"
        out[:, row:row + block.shape[1]] = block
        calls.append(row)

    blender = StripBlender(chans, height, width, grid, emit)
    t = grid.tile
    for y in grid.ys:
        for x in grid.xs:
            rows = reflect_indices(np.arange(y, y + t), height)
            cols = reflect_indices(np.arange(x, x + t), width)
            blender.add(int(y), int(x), field[:, rows][:, :, cols])
        blender.finish_row()
    assert blender._buffer.shape == (chans + 1, t, width)  # one strip, whatever the height
    return out, calls


@given(h=st.integers(1, 300), w=st.integers(1, 200), tile=st.integers(8, 64),
       frac=st.floats(0, 0.45), seed=st.integers(0, 10))
def test_blending_translation_equivariant_predictions_is_exact(h, w, tile, frac, seed):
    """Tiles that are crops of one field must blend back into exactly that field."""
    field = np.random.default_rng(seed).random((2, h, w), dtype=np.float32)
    grid = TileGrid.spread(h, w, tile, overlap=int(tile * frac))
    out, calls = _blend(field, grid, h, w)
    np.testing.assert_allclose(out, field, rtol=1e-5, atol=1e-6)
    assert calls == sorted(calls)


def test_blender_emits_rows_before_the_end():
    h, w, t = 500, 40, 32
    field = np.ones((1, h, w), np.float32)
    grid = TileGrid.spread(h, w, t)
    _, calls = _blend(field, grid, h, w)
    assert len(calls) == len(grid.ys) and calls[0] == 0


def test_blender_rejects_out_of_order_tiles():
    grid = TileGrid(np.array([0, 20]), np.array([0]), 32)
    blender = StripBlender(1, 60, 32, grid, lambda r, b: None)
    blender.add(0, 0, np.zeros((1, 32, 32), np.float32))
    blender.finish_row()
    blender.add(20, 0, np.zeros((1, 32, 32), np.float32))
    with pytest.raises(ValueError, match="order"):
        blender.add(0, 0, np.zeros((1, 32, 32), np.float32))


def test_seams_are_smooth_with_tile_edge_artefacts():
    """Tiles whose borders are wrong (as a valid-conv net's are) leave no visible seam."""
    h, w, t = 300, 300, 64
    grid = TileGrid.spread(h, w, t)
    out = np.zeros((1, h, w), np.float32)
    blender = StripBlender(1, h, w, grid, lambda r, b: out.__setitem__(
        (slice(None), slice(r, r + b.shape[1])), b))
    tile_pred = np.full((1, t, t), 0.5, np.float32)
    tile_pred[:, :4] = tile_pred[:, -4:] = tile_pred[:, :, :4] = tile_pred[:, :, -4:] = 1.0
    for y in grid.ys:
        for x in grid.xs:
            blender.add(int(y), int(x), tile_pred)
        blender.finish_row()
    assert np.abs(out - 0.5).max() < 0.01
