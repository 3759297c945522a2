"""The weights card: everything known about one set of weights beside its tensors.

One description for shipped weights (``models/weights/index.json``) and trained ones (the
safetensors metadata the trainer writes, else the run's ``config.json``): the architecture and
every constructor setting needed to rebuild the network, the µm/px it works at, input
normalisation, classes, post-processing, scores, provenance and checksum.

>>> card = WeightsCard(arch="micronet508", width=0.25)
>>> model = card.build()                      # doctest: +SKIP
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import MicronetError

__all__ = ["DEFAULT_ARCH", "DEFAULT_MPP", "MPP_TOLERANCE", "WeightsCard", "model_options",
           "metadata_mpp"]

#: The architecture meant when a config, card or command names none: the paper's Micro-Net-508.
DEFAULT_ARCH = "micronet508"

#: µm/px of GlaS (20× Zeiss MIRAX MIDI scans): weights that do not say otherwise work at this.
DEFAULT_MPP = 0.62

#: Resolutions within this relative difference count as the same (no resampling, same level).
MPP_TOLERANCE = 0.10

#: Metadata keys a card reads and writes itself; any other key is a model option or provenance.
_OWN_KEYS = ("arch", "width", "num_classes", "model_kwargs", "mpp", "input_mpp", "postprocess",
             "format")
_FORMAT = "micronet-seg"


@functools.cache
def _options(arch: str) -> tuple[tuple[str, Any], ...]:
    from torch import device

    from . import create

    with device("meta"):  # no memory, no initialisation cost
        model = create(arch, width=1 / 64)
    return tuple(getattr(model, "build_kwargs", {}).items())


def model_options(arch: str) -> dict[str, Any]:
    """Constructor settings of ``arch`` beyond width and classes, with their defaults
    (e.g. ``dropout``, ``upsample_init``), as :func:`micronet.models.create` records them."""
    try:
        return dict(_options(arch))
    except ValueError as exc:
        raise MicronetError(str(exc)) from None


def _parse(text: str) -> Any:
    """A metadata string back to the value it was written from (``str(v)`` or JSON)."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


@dataclass(frozen=True)
class WeightsCard:
    """What a user and inference need to know about one set of weights.

    Attributes:
        arch: registered architecture (``micronet508``).
        width, num_classes: the network's size.
        model_kwargs: every other constructor setting (``dropout``, ``upsample_init``, ...),
            so a new model option needs no new field here.
        name: how the weights are shown (``arch.tag`` when shipped, else the file name).
        tag: shipped tag (``glas_w025``); empty for trained weights.
        mpp: the network's working resolution (µm/px).
        input_mpp: µm/px assumed for inputs whose resolution is not given.
        mean, std: input normalisation (:func:`micronet.models.normalize`).
        postprocess: tuned :class:`~micronet.infer.PostprocessConfig` values.
        scores: evaluation results; dataset, license, notes: for people.
        provenance: where the weights came from (training step, epoch, ...).
        file, sha256: the shipped file and its checksum.
    """

    arch: str = DEFAULT_ARCH
    width: float = 1.0
    num_classes: int = 3
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""
    tag: str = ""
    classes: tuple[str, ...] = ("background", "gland", "contour")
    mpp: float = DEFAULT_MPP
    input_mpp: float = DEFAULT_MPP
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    postprocess: Mapping[str, Any] = field(default_factory=dict)
    scores: Mapping[str, Any] = field(default_factory=dict)
    dataset: str = ""
    license: str = ""
    notes: str = ""
    provenance: Mapping[str, Any] = field(default_factory=dict)
    file: str = ""
    sha256: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", f"{self.arch}.{self.tag}" if self.tag else self.arch)
        for key in ("classes", "mean", "std"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        if not self.width > 0 or not self.mpp > 0 or not self.input_mpp > 0:
            raise MicronetError(f"{self.name}: width, mpp and input_mpp must be > 0 "
                                f"(got {self.width}, {self.mpp}, {self.input_mpp})")

    # --- building ---------------------------------------------------------------------------

    def build(self) -> nn.Module:
        """The network these weights fit (random initialisation; load the tensors next)."""
        from . import create

        try:
            return create(self.arch, width=self.width, num_classes=self.num_classes,
                          **dict(self.model_kwargs))
        except (ValueError, TypeError) as exc:
            raise MicronetError(f"{self.name}: {exc}") from None

    @classmethod
    def from_model(cls, model: nn.Module, **extra: Any) -> WeightsCard:
        """The card of a built model; ``extra`` sets card fields (``mpp``, ``input_mpp``, ...)
        and anything else becomes provenance (``step``, ``epoch``)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        own = {k: v for k, v in extra.items() if k in fields}
        provenance = {**dict(own.pop("provenance", {})),
                      **{k: v for k, v in extra.items() if k not in fields}}
        arch = str(getattr(model, "name", type(model).__name__))
        return cls(arch=arch, width=float(getattr(model, "width", 1.0)),
                   num_classes=int(getattr(model, "num_classes", 3)),
                   model_kwargs=dict(getattr(model, "build_kwargs", {})),
                   provenance=provenance, **own)

    # --- JSON (index.json entries, reports) ---------------------------------------------------

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "weights card") -> WeightsCard:
        """From a JSON object (an ``index.json`` entry); unknown keys are errors."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise MicronetError(f"{source}: unknown weights-card field(s) {', '.join(unknown)}")
        try:
            return cls(**dict(values))
        except TypeError as exc:
            raise MicronetError(f"{source}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (:meth:`from_dict` reads it back)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    # --- safetensors metadata (string to string) ---------------------------------------------

    def to_metadata(self) -> dict[str, str]:
        """Metadata for a weights file, so the file describes itself."""
        meta = {"arch": self.arch, "width": str(self.width), "num_classes": str(self.num_classes),
                "model_kwargs": json.dumps(dict(self.model_kwargs), sort_keys=True),
                "mpp": str(self.mpp), "input_mpp": str(self.input_mpp), "format": _FORMAT}
        if self.postprocess:
            meta["postprocess"] = json.dumps(dict(self.postprocess))
        meta.update({k: str(v) for k, v in self.provenance.items() if k not in _OWN_KEYS})
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], *, name: str,
                      run_model: Mapping[str, Any] | None = None,
                      postprocess: Mapping[str, Any] | None = None) -> WeightsCard:
        """The card of a weights file from its metadata; what the metadata lacks comes from
        ``run_model`` (the run's ``config.json`` ``model`` section) and ``postprocess`` (the
        run's ``postprocess.json``). Metadata keys that are options of the architecture (see
        :func:`model_options`) rebuild the network; other unknown keys are provenance.

        Raises:
            MicronetError: no architecture or width anywhere, or unparsable values.
        """
        run_model = dict(run_model or {})
        arch = meta.get("arch", run_model.get("name"))
        width = meta.get("width", run_model.get("width"))
        if arch is None or width is None:
            raise MicronetError(f"{name}: weights have no architecture/width (no safetensors "
                                "metadata 'arch'/'width' and no config.json with a 'model' "
                                "section beside it)")
        options = model_options(str(arch))
        kwargs = {k: v for k, v in run_model.items() if k in options}
        provenance: dict[str, Any] = {}
        for key, text in meta.items():
            if key in _OWN_KEYS:
                continue
            (kwargs if key in options else provenance)[key] = _parse(text)
        if "model_kwargs" in meta:
            kwargs.update(json.loads(meta["model_kwargs"]))
        pp = meta.get("postprocess")
        tuned = json.loads(pp) if pp and pp.strip() else (postprocess or {})
        try:
            return cls(arch=str(arch), width=float(width),
                       num_classes=int(meta.get("num_classes",
                                                run_model.get("num_classes", 3))),
                       model_kwargs=kwargs, name=name, mpp=_mpp(meta.get("mpp")),
                       input_mpp=_mpp(meta.get("input_mpp")), postprocess=dict(tuned),
                       provenance=provenance)
        except (TypeError, ValueError) as exc:
            raise MicronetError(f"{name}: unreadable weights metadata ({exc})") from None


def metadata_mpp(meta: Mapping[str, str]) -> tuple[float, float]:
    """``(mpp, input_mpp)`` from weights metadata (:data:`DEFAULT_MPP` for what is missing)."""
    return _mpp(meta.get("mpp")), _mpp(meta.get("input_mpp"))


def _mpp(value: str | None) -> float:
    return float(value) if value not in (None, "", "None") else DEFAULT_MPP
