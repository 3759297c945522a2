"""Write the bundled demo slide (``src/micronet/data/samples/demo_slide.tif``) and its labels.

The four bundled GlaS sample tiles, 2 x 2 on synthetic glass (``embed_on_glass``, seed 19, 160 px
of glass around and between them), as a tiled JPEG pyramidal TIFF at 0.62 µm/px (levels 1, 1/4,
1/16), plus ``demo_slide_labels.png``: the tiles' reconstructed GlaS labels at their places.

    python scripts/make_demo_slide.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from micronet._io import write_png
from micronet.data.bundled import DEMO_SLIDE_COLUMNS, list_samples, load_sample
from micronet.infer.glass import embed_on_glass
from micronet.infer.slide import write_slide

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "micronet" / "data" / "samples"


def main() -> None:
    pairs = [load_sample(name) for name in list_samples()]
    glass = embed_on_glass([p[0] for p in pairs], [p[1] for p in pairs], columns=DEMO_SLIDE_COLUMNS,
                           seed=19)
    assert glass.labels is not None and glass.labels.max() < 256
    slide = write_slide(SAMPLES / "demo_slide.tif", glass.image, 0.62, quality=80)
    write_png(SAMPLES / "demo_slide_labels.png", glass.labels.astype(np.uint8))
    print(f"{slide}: {slide.stat().st_size / 1e6:.2f} MB, {glass.image.shape[1]}x"
          f"{glass.image.shape[0]} px, boxes {glass.boxes}")


if __name__ == "__main__":
    main()
