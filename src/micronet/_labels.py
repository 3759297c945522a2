"""Validation of instance label maps, shared by training targets and the evaluation metrics."""

from __future__ import annotations

import numpy as np

__all__ = ["check_labels"]


def check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as a 2-D non-negative integer instance map, or raise ``ValueError``.

    Bool masks are accepted as one object each and returned as ``int32``; integer maps are
    returned unchanged (no copy).

    Args:
        labels: ``(H, W)`` instance map, 0 = background, 1..N = instances.
        name: what to call the array in error messages.

    Raises:
        ValueError: not 2-D, not integer (float probabilities are not label maps), or negative
            ids. The message starts with ``name`` and says which.
    """
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (H, W) instance label map, got shape "
                         f"{arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.int32)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: label ids must be integers (0 = background), got dtype "
                         f"{arr.dtype}; float maps such as probabilities are not label maps")
    if arr.size and np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
        raise ValueError(f"{name}: label ids must be non-negative (0 = background, "
                         f"1..N = instances), found {arr.min()}")
    return arr
