"""GlaS data: import and verification, datasets, training targets and augmentation.

Only the GlaS entry points are re-exported here. The other modules are imported by name:
``micronet.data.targets``, ``micronet.data.weightmap``, ``micronet.data.augment``,
``micronet.data.sampling``, ``micronet.data.preview``, ``micronet.data.bundled`` (sample tiles
for the demo), ``micronet.data.verify`` and ``micronet.data.download``.
"""

from .glas import (
    GLAS_COUNTS,
    GLAS_SPLITS,
    GlaSDataset,
    GlaSImport,
    GlaSSample,
    ImageFolderDataset,
    ReleaseProblems,
    import_glas,
    read_manifest,
    train_val_split,
    verify_import,
)

__all__ = [
    "GLAS_COUNTS",
    "GLAS_SPLITS",
    "GlaSDataset",
    "GlaSImport",
    "GlaSSample",
    "ImageFolderDataset",
    "ReleaseProblems",
    "import_glas",
    "read_manifest",
    "train_val_split",
    "verify_import",
]
