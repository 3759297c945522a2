"""What the image path (:mod:`micronet.infer.segmenter`) and the slide path
(:mod:`micronet.infer.slide`) share: tile progress bars, masking class maps outside tissue, and
the part of a segmenter the slide path uses (:class:`ChunkSegmenter`). Below both, so neither
imports the other to get them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from .postprocess import ClassMaps, PostprocessConfig
    from .tiling import TileGrid
    from .tissue import TissueConfig, TissueMask

__all__ = ["tile_progress", "mask_outside", "ChunkSegmenter"]


@contextlib.contextmanager
def tile_progress(progress: Any, total: int, description: str) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)`` for a tile bar: ``progress`` is a rich ``Progress`` to add a task to,
    or ``True``/``False``/``None`` (auto: shown on a TTY) for a bar of its own."""
    from rich.progress import Progress

    from .._console import make_progress

    if isinstance(progress, Progress):
        shared = progress
        task = shared.add_task(description, total=total)
        try:
            yield lambda n: shared.advance(task, n)
        finally:
            shared.remove_task(task)
        return
    with make_progress(progress) as bar:
        own = bar.add_task(description, total=total)
        yield lambda n: bar.advance(own, n)


def mask_outside(maps: ClassMaps, tissue: TissueMask, y0: int = 0, x0: int = 0,
                 block: int = 1024, image: np.ndarray | None = None) -> None:
    """Set gland and contour probabilities to 0 (in place) outside ``tissue``; the maps cover
    the image window at ``(y0, x0)``, and so does ``image`` (RGB on the maps' pixel grid) when
    given: then the mask's edge is decided per pixel (:meth:`TissueMask.refined`). Row blocks
    keep the resized mask small."""
    h, w = maps.shape
    for r in range(0, h, block):
        rows = min(block, h - r)
        outside = ~(tissue.region(y0 + r, x0, rows, w) if image is None
                    else tissue.refined(y0 + r, x0, image[r:r + rows]))
        maps.gland[r:r + block][outside] = 0
        maps.contour[r:r + block][outside] = 0


class ChunkSegmenter(Protocol):
    """What :func:`micronet.infer.slide.segment_slide` needs of a segmenter (a
    :class:`~micronet.infer.Segmenter` has it all)."""

    tile: int
    overlap: int
    postprocess: PostprocessConfig
    tissue: TissueConfig | None
    tissue_mask: np.ndarray | None

    @property
    def mpp(self) -> float:
        """µm/px the weights work at."""

    def postprocess_at(self, mpp: float) -> PostprocessConfig:
        """Post-processing with its sizes rescaled for labelling at ``mpp`` µm/px."""

    def predict_maps(self, image: np.ndarray, *, grid: TileGrid | None = None,
                     window: tuple[int, int, int, int] | None = None,
                     return_probabilities: bool = False, progress: Any = None,
                     ) -> tuple[ClassMaps, np.ndarray | None]:
        """Blended class maps of ``window`` of ``image`` on ``grid``."""
