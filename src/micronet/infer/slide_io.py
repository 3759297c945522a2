"""Reading whole-slide images (SVS, NDPI, generic pyramidal TIFF): regions of a pyramid level,
the level to segment at, the slide at the working resolution, and writing pyramidal TIFFs.
:mod:`micronet.infer.slide` segments what this reads."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..models.card import MPP_TOLERANCE

__all__ = ["SLIDE_SUFFIXES", "SlideReader", "WorkingImage", "choose_level", "write_slide"]

# Level pixels read at once by SlideReader.read_scaled (~100 MB of RGB): bounds memory when a
# shrink factor is large (a slide with no pyramid level between 0.25 and 4 µm/px).
_STRIP_PIXELS = 32 * 2**20

SLIDE_SUFFIXES = {".svs", ".ndpi", ".scn", ".mrxs", ".vms", ".vmu", ".bif", ".svslide"}


class SlideReader:
    """RGB regions of a pyramidal slide through tiffslide (OpenSlide when tiffslide fails)."""

    def __init__(self, path: str | Path, mpp: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: slide file not found")
        self._slide, prefix = self._open()
        try:
            self._read_header(prefix, mpp)
        except InputError:
            self._slide.close()
            raise
        except Exception as exc:  # tiffslide parses lazily: a broken header fails here
            self._slide.close()
            raise InputError(f"{self.path}: not a readable slide ({type(exc).__name__}: "
                             f"{exc})") from None

    def _read_header(self, prefix: str, mpp: float | None) -> None:
        props = self._slide.properties
        found = props.get(f"{prefix}.mpp-x")
        if mpp is not None:
            if not mpp > 0:
                raise InputError(f"{self.path}: mpp must be positive, got {mpp}")
            self.mpp = float(mpp)
        elif found not in (None, "", 0):
            self.mpp = float(found)
        else:
            raise InputError(f"{self.path}: no µm/px in the slide's metadata; give the level-0 "
                             "resolution with --mpp (e.g. 0.25 for 40x, 0.5 for 20x)")
        self.dimensions = [(int(w), int(h)) for w, h in self._slide.level_dimensions]
        self.downsamples = [float(d) for d in self._slide.level_downsamples]

    def _open(self) -> tuple[Any, str]:
        try:
            import tiffslide

            return tiffslide.TiffSlide(str(self.path)), "tiffslide"
        except Exception as exc:
            try:
                import openslide
            except ImportError:
                raise InputError(f"{self.path}: not a readable slide ({exc})") from None
            try:
                return openslide.OpenSlide(str(self.path)), "openslide"
            except Exception as exc2:
                raise InputError(f"{self.path}: not a readable slide ({exc2})") from None

    def level_mpp(self, level: int) -> float:
        """µm per pixel of a pyramid level."""
        return self.mpp * self.downsamples[level]

    def read(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """``(height, width, 3) uint8`` at level coordinates; must lie inside the level."""
        ds = self.downsamples[level]
        region = self._slide.read_region((round(x * ds), round(y * ds)), level, (width, height))
        arr = np.asarray(region)
        if arr.ndim == 3 and arr.shape[2] == 4:  # OpenSlide RGBA: transparent = white glass
            alpha = arr[..., 3:4].astype(np.float32) / 255
            arr = (arr[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
        return np.ascontiguousarray(arr[..., :3])

    def thumbnail(self, max_size: int = 2048) -> tuple[np.ndarray, float]:
        """The coarsest level shrunk to at most ``max_size`` px, and its level-0 px per px."""
        level = len(self.dimensions) - 1
        w, h = self.dimensions[level]
        image = self.read_scaled(level, min(1.0, max_size / max(w, h)))
        return image, self.downsamples[level] * w / image.shape[1]

    def read_scaled(self, level: int, factor: float) -> np.ndarray:
        """The whole of ``level`` resized by ``factor`` <= 1 (area interpolation). Read in
        strips, so a slide without a real pyramid never loads its full level at once."""
        return self.read_scaled_texture(level, factor, texture=False)[0]

    def read_scaled_texture(self, level: int, factor: float, texture: bool = True
                            ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`read_scaled` and, per output pixel, the standard deviation of the darkest
        channel over the ``level`` pixels it covers (the tissue detector's texture cue, which a
        pyramid level already at the output's resolution no longer holds)."""
        import cv2

        from .tissue import darkest_channel_texture

        w, h = self.dimensions[level]
        out_w, out_h = max(1, round(w * factor)), max(1, round(h * factor))
        cell = max(1, int(round(1 / factor)))  # level rows per output row
        strip = max(1, min(256, _STRIP_PIXELS // (w * cell)))  # output rows per strip
        parts, textures = [], []
        for r0 in range(0, out_h, strip):  # strips of whole output rows: they add up to out_h
            r1 = min(r0 + strip, out_h)
            y0 = min(round(r0 / factor), h - 1)
            y1 = h if r1 == out_h else max(round(r1 / factor), y0 + 1)
            part = self.read(level, 0, y0, w, y1 - y0)
            size = (out_w, r1 - r0)
            if texture:
                textures.append(darkest_channel_texture(part, size))
            if factor < 1:
                part = cv2.resize(part, size, interpolation=cv2.INTER_AREA)
            parts.append(part)
        return (np.concatenate(parts, axis=0),
                np.concatenate(textures, axis=0) if texture else None)

    def close(self) -> None:
        """Release the file."""
        self._slide.close()


def write_slide(path: str | Path, image: np.ndarray, mpp: float,
                downsamples: tuple[int, ...] = (4, 16), quality: int = 85) -> Path:
    """Write ``image`` as a tiled, JPEG-compressed pyramidal TIFF (level 0 at ``mpp`` µm/px,
    reduced levels as SubIFDs) that tiffslide and ``micronet segment`` read as a slide; for
    the bundled demo slide and slides made of images laid on glass."""
    import cv2
    import tifffile

    from .._io import atomic_path

    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp) as tif:
        for k, ds in enumerate((1, *downsamples)):
            h, w = image.shape[0] // ds, image.shape[1] // ds
            level = image if ds == 1 else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            tif.write(level, tile=(256, 256), photometric="rgb", compression="jpeg",
                      compressionargs={"level": quality},
                      subifds=len(downsamples) if k == 0 else None, subfiletype=1 if k else 0,
                      resolution=(1e4 / (mpp * ds), 1e4 / (mpp * ds)),
                      resolutionunit="CENTIMETER")
    return Path(path)


def choose_level(reader: SlideReader, target_mpp: float, tolerance: float = MPP_TOLERANCE
                 ) -> tuple[int, float]:
    """The pyramid level to read and the resize factor from it to ``target_mpp`` (1.0 = none)."""
    ok = [lv for lv in range(len(reader.dimensions))
          if reader.level_mpp(lv) <= target_mpp * (1 + tolerance)]
    level = max(ok, key=reader.level_mpp) if ok else 0
    factor = reader.level_mpp(level) / target_mpp
    return level, 1.0 if abs(factor - 1.0) <= tolerance else factor


class WorkingImage:
    """The slide at the working resolution: level ``level`` resized by ``factor``."""

    def __init__(self, reader: SlideReader, level: int, factor: float) -> None:
        self.reader, self.level, self.factor = reader, level, factor
        w, h = reader.dimensions[level]
        self.level_size = (w, h)
        self.width, self.height = max(1, round(w * factor)), max(1, round(h * factor))

    def read(self, y0: int, x0: int, height: int, width: int) -> np.ndarray:
        """Working-frame region (inside the working image)."""
        if self.factor == 1.0:
            return self.reader.read(self.level, x0, y0, width, height)
        import cv2

        f = self.factor
        sigma = max(0.0, (1 / f - 1) / 2)
        pad = math.ceil(4 * sigma) + 2
        lw, lh = self.level_size
        sx0 = max(math.floor((x0 + 0.5) / f - 0.5) - pad, 0)
        sy0 = max(math.floor((y0 + 0.5) / f - 0.5) - pad, 0)
        sx1 = min(math.ceil((x0 + width - 0.5) / f - 0.5) + pad + 1, lw)
        sy1 = min(math.ceil((y0 + height - 0.5) / f - 0.5) + pad + 1, lh)
        src = self.reader.read(self.level, sx0, sy0, sx1 - sx0, sy1 - sy0)
        if sigma > 0:
            src = cv2.GaussianBlur(src, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        m = np.array([[1 / f, 0, (x0 + 0.5) / f - 0.5 - sx0],
                      [0, 1 / f, (y0 + 0.5) / f - 0.5 - sy0]], np.float64)
        return cv2.warpAffine(src, m, (width, height), flags=cv2.INTER_LINEAR |
                              cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)
