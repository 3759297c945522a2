"""Small file helpers shared by every writer: atomic writes and image reading with clear errors."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["atomic_path", "read_rgb", "read_labels", "write_png", "sha256_file"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Readers never see a half-written file, and a failed write leaves nothing behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix,
                               dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _open_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image")
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    try:
        img = Image.open(path)
        img.load()
    except UnidentifiedImageError:
        raise InputError(f"{path}: not a readable image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: unreadable or truncated image ({exc})") from None
    if img.width == 0 or img.height == 0:
        raise InputError(f"{path}: zero-size image")
    return img


_GRAY_HINT = ("micronet needs a colour (RGB) H&E image; export the slide or tile in colour, "
              "not a single channel")
_MODES = {"L": "grayscale", "1": "1-bit", "LA": "grayscale+alpha", "La": "grayscale+alpha",
          "I;16": "16-bit grayscale", "I;16B": "16-bit grayscale", "I;16L": "16-bit grayscale",
          "I": "32-bit integer", "F": "float", "CMYK": "CMYK", "YCbCr": "YCbCr", "LAB": "Lab",
          "HSV": "HSV"}
_ORIENTATION = 0x0112  # EXIF / TIFF tag 274


def _note(on_note: Callable[[str], None] | None, line: str) -> None:
    if on_note is None:
        from ._console import console

        console.print(f"[yellow]note:[/] {line}", highlight=False, soft_wrap=True)
    else:
        on_note(line)


def _flatten_alpha(path: Path, rgba: np.ndarray, on_note: Callable[[str], None] | None
                   ) -> np.ndarray:
    """RGB of an RGBA array: an opaque alpha is dropped; real transparency is composited on
    white (glass), and said."""
    rgb, alpha = rgba[..., :3], rgba[..., 3]
    opaque = np.iinfo(rgba.dtype).max
    if (alpha == opaque).all():
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.float32)[..., None] / opaque
    out = rgb.astype(np.float32) * a + opaque * (1 - a)
    _note(on_note, f"{path}: {np.mean(alpha < opaque):.1%} of the pixels are transparent; "
                   "composited on white")
    return out.round().astype(rgba.dtype)


def _to_uint8(path: Path, arr: np.ndarray, on_note: Callable[[str], None] | None) -> np.ndarray:
    """8-bit from 16-bit (full range scaled: 65535 -> 255), said once."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype != np.uint16:
        raise InputError(f"{path}: {arr.dtype} image; micronet needs 8- or 16-bit RGB")
    _note(on_note, f"{path}: 16-bit image scaled to 8-bit")
    return (arr.astype(np.float32) * (255 / 65535)).round().astype(np.uint8)


def read_rgb(path: str | os.PathLike[str],
             on_note: Callable[[str], None] | None = None) -> np.ndarray:
    """Read an image as ``(H, W, 3) uint8`` RGB, as image viewers display it.

    The EXIF / TIFF orientation tag is applied (as viewers and QuPath do), so labels and
    polygons match what the user sees. RGBA with an opaque alpha, palette and 16-bit RGB
    images are converted; RGBA with real transparency is composited on white. Each conversion
    a user would not expect (transparency, 16 bits, a rotation) is reported in one line to
    ``on_note`` (default: the console's stderr).

    Raises:
        InputError: unreadable, truncated, zero-size, grayscale (with a hint) or another
            colour model (CMYK, float...).
    """
    path = Path(path)
    if path.suffix.lower() in {".tif", ".tiff"}:
        return _read_rgb_tiff(path, on_note)
    from PIL import ImageOps

    img = _open_image(path)
    orientation = img.getexif().get(_ORIENTATION, 1)
    if orientation not in (1, None):
        img = ImageOps.exif_transpose(img)
        _note(on_note, f"{path}: EXIF orientation {orientation} applied (the image is "
                       "segmented as viewers show it)")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in {"RGBa", "RGBX"}:
        img = img.convert("RGBA" if img.mode == "RGBa" else "RGB")
    if img.mode in _MODES or img.mode not in {"RGB", "RGBA"}:
        kind = _MODES.get(img.mode, img.mode)
        hint = _GRAY_HINT if "gray" in kind or kind == "1-bit" else "micronet needs RGB"
        raise InputError(f"{path}: {kind} image; {hint}")
    arr = np.asarray(img, dtype=np.uint8)
    if img.mode == "RGBA":
        return _flatten_alpha(path, arr, on_note)
    return arr.copy()


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply a TIFF/EXIF orientation (2-8) to an ``(H, W, ...)`` array, as viewers do."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: a.swapaxes(0, 1)[:, ::-1],
           7: lambda a: a.swapaxes(0, 1)[::-1, ::-1], 8: lambda a: a.swapaxes(0, 1)[::-1]}
    return np.ascontiguousarray(ops[orientation](arr)) if orientation in ops else arr


def _read_rgb_tiff(path: Path, on_note: Callable[[str], None] | None) -> np.ndarray:
    import tifffile

    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            arr = tif.asarray(level=0) if tif.series else page.asarray()
            tag = page.tags.get(274)
            orientation = int(tag.value) if tag is not None else 1
            palette = (page.photometric == tifffile.PHOTOMETRIC.PALETTE
                       and page.colormap is not None)
            colormap = page.colormap if palette else None
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise InputError(f"{path}: unreadable or truncated TIFF ({exc})") from None
    if arr.size == 0:
        raise InputError(f"{path}: zero-size image")
    if colormap is not None and arr.ndim == 2:
        arr = np.moveaxis(np.asarray(colormap), 0, -1)[arr]  # (H, W, 3), 16-bit entries
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 2)):
        raise InputError(f"{path}: grayscale TIFF ({arr.dtype}); {_GRAY_HINT}")
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise InputError(f"{path}: TIFF of shape {arr.shape}; micronet needs RGB (H, W, 3)")
    arr = _to_uint8(path, arr, on_note)
    if arr.shape[-1] == 4:
        arr = _flatten_alpha(path, arr, on_note)
    if orientation != 1:
        arr = _orient(arr, orientation)
        _note(on_note, f"{path}: TIFF orientation {orientation} applied (the image is "
                       "segmented as viewers show it)")
    return np.ascontiguousarray(arr)


def read_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an integer instance-label image (0 = background) as ``(H, W) int32``.

    Raises:
        InputError: unreadable, or not a single-channel integer image.
    """
    path = Path(path)
    if path.suffix.lower() in {".tif", ".tiff"}:
        import tifffile

        try:
            arr = tifffile.imread(path)
        except Exception as exc:
            raise InputError(f"{path}: unreadable label TIFF ({exc})") from None
    else:
        img = _open_image(path)
        if img.mode not in {"L", "P", "I", "I;16", "I;16B", "1"}:
            raise InputError(f"{path}: {img.mode} image is not an integer label map")
        arr = np.asarray(img)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool:
        raise InputError(f"{path}: shape {arr.shape} dtype {arr.dtype} is not a 2-D integer "
                         "label map")
    return arr.astype(np.int32)


def write_png(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a uint8/uint16 image as PNG atomically (zlib level 1: ~3x faster to write than
    PIL's default 6, for files ~10-20 % larger)."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG", compress_level=1)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks so large files never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
