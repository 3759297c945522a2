"""Training configuration: one frozen dataclass tree with the paper's defaults.

Loaded from YAML/TOML/JSON, overridden by ``section.key=value`` pairs from the command line, and
saved resolved (``config.json``) in the run folder and in every checkpoint. Unknown keys are
errors, so a typo never silently trains with a default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_type_hints

from ..data.targets import DEFAULT_CONTOUR_WIDTH
from ..errors import MicronetError
from ..models.blocks import ACTIVATIONS, NORMS
from ..models.card import DEFAULT_ARCH, DEFAULT_MPP
from ..models.micronet import UPSAMPLE_INITS

__all__ = ["ModelConfig", "DataConfig", "ScheduleConfig", "RunConfig", "TrainConfig",
           "load_config", "apply_overrides"]


#: What ``run.best_metric`` may name: validation scores logged at each validation.
BEST_METRICS = ("val_f1_tuned", "val_f1", "val_dice", "val_pixel_f1")
#: How ``data.val_split`` may hold images out.
VAL_SPLITS = ("random", "grade")
#: ``schedule.lr_schedule``: the paper's 10× decay every ``lr_decay_epochs`` epochs, or a linear
#: warm-up then cosine decay to ``lr_floor`` over the run's total steps.
LR_SCHEDULES = ("paper", "cosine")
_CHOICES = {"model.upsample_init": UPSAMPLE_INITS, "model.norm": NORMS, "model.act": ACTIVATIONS,
            "data.val_split": VAL_SPLITS,
            "schedule.optimizer": ("adam", "adamw", "sgd"),
            "schedule.lr_schedule": LR_SCHEDULES,
            "run.precision": ("auto", "bf16", "fp32", "fp16"), "run.best_metric": BEST_METRICS}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. ``width`` 0.125 trains on a 2-core CPU; the paper's model is width 1."""

    name: str = DEFAULT_ARCH
    width: float = 0.125
    num_classes: int = 3
    dropout: float = 0.5  # the paper's dropout before the auxiliary and fused classifiers
    grad_checkpointing: bool = False  # recompute activations: full width at batch 1 in < 12 GB
    init: str = ""  # start from weights: a shipped tag ("glas"), .safetensors file or run folder
    upsample_init: str = "glorot"  # glorot | nearest: how stride-k upsampling layers start
    norm: str = "none"  # none (paper) | batch | group | instance, after every conv
    act: str = "tanh"  # tanh (paper) | relu | leaky_relu


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how patches are made (paper: 600 px patches, 508 px crops)."""

    root: str = "data/glas"  # a folder written by `micronet data glas` (or image/label pairs)
    split: str = "train"
    val_fraction: float = 0.1  # held-out share of the training images, for validation
    val_split: str = "random"  # random | grade (GlaS: each grade held out in proportion)
    patch_size: int = 600  # at the training resolution (data.mpp)
    crop_size: int | None = None  # must equal the model's input size (None: that size)
    image_mpp: float = DEFAULT_MPP  # µm/px of the training images (GlaS: 0.62, 20×)
    mpp: float = 0.0  # µm/px to train at (0 = the images' own); 1.24 = GlaS at half size
    contour_width: int = DEFAULT_CONTOUR_WIDTH  # px, contour band of the 3-class target
    w0: float = 10.0  # U-Net weight map border weight
    sigma: float = 5.0  # U-Net weight map border width (px)
    distortion_p: float = 0.5
    blur_p: float = 0.5
    stain_p: float = 0.0  # chance of an HED stain jitter per sample (not in the paper)
    stain_sigma: float = 0.05  # HED jitter strength: scale 1±sigma, shift ±sigma per channel
    zoom: float = 0.0  # scale jitter: zoom in [1/(1+zoom), 1+zoom], log-uniform (not in paper)
    glass_p: float = 0.2  # chance of putting the crop's tissue on synthetic glass (background)
    workers: int = 0  # processes for the one-off target/weight-map precomputation

    @property
    def train_mpp(self) -> float:
        """µm/px the network trains (and so segments) at."""
        return self.mpp or self.image_mpp

    @property
    def scale(self) -> float:
        """Resize factor from the training images to the training resolution (0.5: half size)."""
        return self.image_mpp / self.train_mpp


@dataclass(frozen=True)
class ScheduleConfig:
    """Optimisation. One epoch = ``steps_per_epoch`` optimiser steps of ``batch_size`` patches.

    The paper gives lr = lr0·10^(−epoch/5) (epoch counted from 0 here, so the first epoch runs at
    lr0) and weighs the auxiliary losses by 1/epoch (epoch counted from 1). It does not give the
    epoch length: the default, 8 patches per training image per epoch (85 GlaS images -> ~77 after
    the hold-out -> 154 steps of 4), sees every image several times per epoch under augmentation.
    Adam is used (the paper's lr0 = 1e-3 is Adam's usual rate); batch 4 fits a CPU and keeps
    per-step noise moderate.
    """

    epochs: int = 25
    steps_per_epoch: int = 0  # 0 = 8 patches per training image / batch_size
    batch_size: int = 4
    lr0: float = 1e-3
    lr_decay_epochs: float = 5.0  # lr drops 10× every this many epochs
    lr_schedule: str = "paper"  # paper | cosine (warm-up, then cosine to lr_floor)
    warmup_steps: int = 0  # cosine: linear warm-up steps from lr0/100
    lr_floor: float = 1e-5  # cosine: lr at the last step
    budget_min: float = 0.0  # size the run's steps to this wall time (0 = epochs × steps)
    optimizer: str = "adam"  # adam | adamw | sgd
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # 0 = off
    dice_weight: float = 0.0  # soft Dice on the gland class added to the loss (0 = paper: off)
    ema_decay: float = 0.0  # validate/save an EMA of the weights, e.g. 0.998 (0 = paper: off)


@dataclass(frozen=True)
class RunConfig:
    """Execution: where outputs go, device, precision and bookkeeping intervals."""

    out: str = "runs/micronet"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 where fast) | bf16 | fp32
    channels_last: bool = True
    compile: bool = False  # torch.compile the model (CUDA: faster after a warm-up)
    threads: int = 0  # CPU threads (0 = torch default)
    log_every: int = 10  # steps between progress-log lines
    checkpoint_every: int = 50  # steps between `last` checkpoints (and at every epoch end)
    validate: bool = True
    val_every: int = 1  # epochs between validations (and `best` checkpoint decisions)
    best_metric: str = "val_f1_tuned"  # what `best` maximises; one of BEST_METRICS
    # fraction of the schedule's steps before which validations are logged but cannot become
    # `best` (e.g. 0.75: choose among the last quarter, where the lr is low; 0 = any step)
    best_after: float = 0.0
    max_steps: int = 0  # stop this invocation after this many steps (0 = whole schedule)
    time_limit_min: float = 0.0  # stop (after a checkpoint) after this many minutes; 0 = no limit
    shard_mb: int = 15  # safetensors shard size for checkpoints (device transfers need < 16 MiB)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; saved resolved with every checkpoint."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/YAML-safe)."""
        return dataclasses.asdict(self)

    @property
    def crop_size(self) -> int:
        """The training crop: ``data.crop_size``, or the model's input size when that is ``None``.

        Raises:
            MicronetError: ``data.crop_size`` is ``None`` and ``model.name`` is not a known
                architecture.
        """
        if self.data.crop_size is not None:
            return self.data.crop_size
        from ..models import input_size

        try:
            return input_size(self.model.name)
        except ValueError as exc:
            raise MicronetError(str(exc)) from None

    def resolved(self) -> TrainConfig:
        """This config with ``data.crop_size`` filled in (as saved with a run); unchanged while
        ``model.name`` is unknown (building the model reports that)."""
        if self.data.crop_size is not None:
            return self
        try:
            crop = self.crop_size
        except MicronetError:
            return self
        return dataclasses.replace(self, data=dataclasses.replace(self.data, crop_size=crop))

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a nested dict; unknown sections or keys raise ``MicronetError``."""
        parts: dict[str, Any] = {}
        for key, value in (d or {}).items():
            if key not in _SECTIONS:
                raise MicronetError(f"{source}: unknown section {key!r} "
                                    f"(sections: {', '.join(_SECTIONS)})")
            kind = _SECTIONS[key]
            names = {f.name for f in dataclasses.fields(kind)}
            bad = sorted(set(value or {}) - names)
            if bad:
                raise MicronetError(f"{source}: unknown key {key}.{bad[0]} "
                                    f"(known: {', '.join(sorted(names))})")
            value = dict(value or {})
            if key == "data" and value.get("contour_width") == 0:
                # configs saved before the width was explicit wrote 0 for the default width
                value["contour_width"] = DEFAULT_CONTOUR_WIDTH
            parts[key] = kind(**value)
        return cls(**parts).validate(source)

    def problems(self) -> list[str]:
        """Every out-of-range or unknown value, as ``section.key=value: why`` (empty when valid).

        Checked together when a config is built, so one run of ``micronet train`` reports every
        bad value before any data is read or model built.
        """
        m, d, s, r = self.model, self.data, self.schedule, self.run
        out = []
        try:
            crop = self.crop_size
        except MicronetError:  # unknown architecture: building the model reports it
            crop = d.crop_size or 0
        for key, allowed in _CHOICES.items():
            section, name = key.split(".")
            value = getattr(getattr(self, section), name)
            if value not in allowed:
                out.append(f"{key}={value!r}: expected {', '.join(allowed)}")
        if not (r.device in ("auto", "cpu", "cuda") or
                (r.device.startswith("cuda:") and r.device[5:].isdigit())):
            out.append(f"run.device={r.device!r}: expected auto, cpu, cuda or cuda:N")
        checks = [
            ("model.width", m.width > 0, "must be > 0"),
            ("model.dropout", 0 <= m.dropout < 1, "must be in [0, 1)"),
            ("data.val_fraction", 0 <= d.val_fraction < 1, "must be in [0, 1)"),
            ("data.patch_size", d.patch_size >= crop, f"is smaller than data.crop_size={crop}"),
            ("data.crop_size", d.crop_size is None or d.crop_size >= 1,
             "must be >= 1 (or unset: the model's input size)"),
            ("data.contour_width", d.contour_width >= 1, "must be >= 1"),
            ("data.sigma", d.sigma > 0, "must be > 0"),
            ("data.w0", d.w0 >= 0, "must be >= 0"),
            ("data.distortion_p", 0 <= d.distortion_p <= 1, "must be in [0, 1]"),
            ("data.blur_p", 0 <= d.blur_p <= 1, "must be in [0, 1]"),
            ("data.stain_p", 0 <= d.stain_p <= 1, "must be in [0, 1]"),
            ("data.stain_sigma", 0 <= d.stain_sigma < 1, "must be in [0, 1)"),
            ("data.zoom", 0 <= d.zoom < 1, "must be in [0, 1)"),
            ("data.glass_p", 0 <= d.glass_p <= 1, "must be in [0, 1]"),
            ("data.image_mpp", d.image_mpp > 0, "must be > 0"),
            ("data.mpp", d.mpp >= 0, "must be >= 0 (0 = the images' own)"),
            ("data.workers", d.workers >= 0, "must be >= 0"),
            ("schedule.epochs", s.epochs >= 1, "must be >= 1"),
            ("schedule.steps_per_epoch", s.steps_per_epoch >= 0, "must be >= 0 (0 = default)"),
            ("schedule.batch_size", s.batch_size >= 1, "must be >= 1"),
            ("schedule.lr0", s.lr0 >= 0, "must be >= 0"),
            ("schedule.lr_decay_epochs", s.lr_decay_epochs > 0, "must be > 0"),
            ("schedule.weight_decay", s.weight_decay >= 0, "must be >= 0"),
            ("schedule.warmup_steps", s.warmup_steps >= 0, "must be >= 0"),
            ("schedule.lr_floor", 0 <= s.lr_floor and (s.lr_floor <= s.lr0 or
                                                       s.lr_schedule != "cosine"),
             "must be in [0, schedule.lr0] (cosine decays from lr0 to it)"),
            ("schedule.budget_min", s.budget_min >= 0, "must be >= 0 (0 = no budget)"),
            ("schedule.grad_clip", s.grad_clip >= 0, "must be >= 0 (0 = off)"),
            ("schedule.dice_weight", s.dice_weight >= 0, "must be >= 0 (0 = off)"),
            ("schedule.ema_decay", 0 <= s.ema_decay < 1, "must be in [0, 1) (0 = off)"),
            ("run.threads", r.threads >= 0, "must be >= 0 (0 = torch default)"),
            ("run.log_every", r.log_every >= 1, "must be >= 1"),
            ("run.checkpoint_every", r.checkpoint_every >= 1, "must be >= 1"),
            ("run.val_every", r.val_every >= 1, "must be >= 1"),
            ("run.best_after", 0 <= r.best_after < 1, "must be in [0, 1) (0 = any step)"),
            ("run.max_steps", r.max_steps >= 0, "must be >= 0 (0 = whole schedule)"),
            ("run.time_limit_min", r.time_limit_min >= 0, "must be >= 0 (0 = no limit)"),
            ("run.shard_mb", r.shard_mb >= 1, "must be >= 1"),
        ]
        for key, ok, why in checks:
            if not ok:
                section, name = key.split(".")
                out.append(f"{key}={getattr(getattr(self, section), name)!r}: {why}")
        return out

    def validate(self, source: str = "config") -> TrainConfig:
        """Raise one ``MicronetError`` naming every bad value; return ``self`` when valid."""
        bad = self.problems()
        if bad:
            raise MicronetError(f"{source}: " + "; ".join(bad))
        return self

    def save(self, path: Path) -> None:
        """Write as JSON atomically."""
        from .._io import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


_SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig,
                              "schedule": ScheduleConfig, "run": RunConfig}


def load_config(path: str | Path | None) -> TrainConfig:
    """Read a YAML (.yaml/.yml), TOML (.toml) or JSON config file; ``None`` gives the defaults."""
    if path is None:
        return TrainConfig()
    path = Path(path)
    if not path.is_file():
        raise MicronetError(f"{path}: config file not found")
    text = path.read_text()
    try:
        if path.suffix in {".yaml", ".yml"}:
            import yaml

            d = yaml.safe_load(text) or {}
        elif path.suffix == ".toml":
            import tomllib

            d = tomllib.loads(text)
        else:
            d = json.loads(text)
    except Exception as exc:  # parse errors of three libraries
        raise MicronetError(f"{path}: cannot parse config ({exc})") from None
    if not isinstance(d, dict):
        raise MicronetError(f"{path}: config must be a mapping of sections")
    return TrainConfig.from_dict(d, source=str(path))


def _coerce(value: str, current: Any, key: str) -> Any:
    if current is None:  # an optional value left unset: typed by its annotation
        section, name = key.split(".", 1)
        hint = get_type_hints(_SECTIONS[section])[name]
        current = next(t for t in get_args(hint) if t is not type(None))()
    if isinstance(current, bool):
        if value.lower() in {"1", "true", "yes", "on"}:
            return True
        if value.lower() in {"0", "false", "no", "off"}:
            return False
        raise MicronetError(f"override {key}={value}: expected true/false")
    try:
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
    except ValueError:
        raise MicronetError(f"override {key}={value}: expected a "
                            f"{type(current).__name__}") from None
    return value


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``section.key=value`` overrides (typed like the default); unknown keys are errors."""
    d = config.to_dict()
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise MicronetError(f"override {item!r}: expected section.key=value")
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        if section not in d or name not in d[section]:
            raise MicronetError(f"override {key}: no such config key")
        d[section][name] = _coerce(value, d[section][name], key)
    return TrainConfig.from_dict(d, source="overrides")
