"""The training loop: paper loss and schedule, bf16/channels_last, exact resume, DDP.

``train(config)`` runs a whole schedule (or a part of it: ``run.max_steps``,
``run.time_limit_min``); ``train(config, resume=RUN)`` continues a run exactly where its last
checkpoint left it — model, optimizer, step, data-sampler RNG and dropout RNG — so a killed and
resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, cast

import torch
from rich.progress import TextColumn

from .._allocator import keep_freed_memory
from .._console import console, make_progress
from .._device import resolve_device, resolve_precision
from ..errors import MicronetError
from ..infer.run_folder import RunFolder
from ..models import create, load_init_weights
from .checkpoint import load_state, save_model_weights, save_state
from .config import DataConfig, TrainConfig
from .data import TrainingData, load_training_data
from .distributed import DistInfo, cleanup_distributed, init_distributed
from .ema import WeightAverage
from .schedule import aux_weight, budget_steps, cosine_lr, learning_rate
from .step import model_input, training_step

if TYPE_CHECKING:
    from ..models import MicroNet
    from .validate import Validation

__all__ = ["train", "TrainResult", "build_model"]


#: Steps timed before a wall-time budget first sizes the run (the first few include warm-up).
_CALIBRATION_STEPS = 20


class _Clock(NamedTuple):
    """Seconds spent in training steps and in validations, and how many validations ran."""

    train_s: float = 0.0
    val_s: float = 0.0
    validations: int = 0


@dataclass
class TrainResult:
    """Where the run lives, the trained (unwrapped) model, and the last step reached."""

    run_dir: Path
    model: torch.nn.Module
    step: int
    best_score: float


def build_model(config: TrainConfig) -> MicroNet:
    """The network ``config.model`` describes (with ``model.init`` weights when given), checked
    against the crop size."""
    try:
        model = create(config.model.name, width=config.model.width,
                       num_classes=config.model.num_classes, dropout=config.model.dropout,
                       upsample_init=config.model.upsample_init, norm=config.model.norm,
                       act=config.model.act)
    except ValueError as exc:
        raise MicronetError(f"model: {exc}") from None
    if config.model.init:
        load_init_weights(model, config.model.init)
    if config.data.crop_size not in (None, model.input_size):
        raise MicronetError(f"data.crop_size={config.data.crop_size} but {config.model.name} takes "
                            f"{model.input_size}×{model.input_size} inputs; set data.crop_size="
                            f"{model.input_size} or leave it unset")
    return model


def _make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    s = config.schedule
    if s.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=s.lr0, weight_decay=s.weight_decay)
    if s.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=s.lr0, weight_decay=s.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=s.lr0, momentum=0.9,  # validated: "sgd"
                           weight_decay=s.weight_decay)


def _rng_state(generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    state = {"sampler": generator.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], generator: torch.Generator,
                   device: torch.device) -> None:
    generator.set_state(state["sampler"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _prepare_run_dir(config: TrainConfig, resume: Path | None, dist: DistInfo) -> Path:
    run_dir = Path(resume) if resume is not None else Path(config.run.out)
    if dist.is_main:
        if resume is None and RunFolder(run_dir).state.exists():
            raise MicronetError(f"{run_dir}: a run already exists here; use --resume {run_dir} to "
                                "continue it or choose another run.out")
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(RunFolder(run_dir).config)
    return run_dir


def train(config: TrainConfig, resume: str | Path | None = None,
          progress: bool | None = None) -> TrainResult:
    """Train (or resume) a Micro-Net; returns the run folder and the model."""
    config = config.resolved().validate()
    device = resolve_device(config.run.device)
    dist = init_distributed(device)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    if device.type == "cpu":  # 1.4x faster steps: no page faults on re-allocated activations
        keep_freed_memory()
    try:
        return _train(config, Path(resume) if resume else None, device, dist, progress)
    finally:
        cleanup_distributed(dist)


def _train(config: TrainConfig, resume: Path | None, device: torch.device, dist: DistInfo,
           progress: bool | None) -> TrainResult:
    torch.manual_seed(config.run.seed)
    model = build_model(config)
    data = load_training_data(config, device)
    run_dir = _prepare_run_dir(config, resume, dist)
    run = RunFolder(run_dir)
    if dist.is_main:  # which images trained and which validated (post-processing tunes on these)
        run.write_split(data.train_names, data.val_names)
    s = config.schedule
    steps_per_epoch = s.steps_per_epoch or max(1, math.ceil(8 * data.num_train / s.batch_size))
    total_steps = steps_per_epoch * s.epochs

    model.to(device)
    if config.run.channels_last:
        # Module.to takes memory_format at run time; torch's overloads for it omit the keyword
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model.set_grad_checkpointing(config.model.grad_checkpointing)
    optimizer = _make_optimizer(model, config)
    ema = WeightAverage(model, s.ema_decay) if s.ema_decay else None
    generator = torch.Generator().manual_seed(config.run.seed * 1000 + dist.rank)
    step, best = 0, -1.0
    clock = _Clock()  # wall time spent training and validating, carried across resumes
    if resume is not None:
        state = load_state(run.state)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            if "ema" not in state:
                raise MicronetError(f"{run.state}: schedule.ema_decay is set but this run was "
                                    "trained without it; resume with the run's own config")
            ema.load_state_dict(state["ema"])
        step, best = int(state["step"]), float(state["best_score"])
        total_steps = int(state.get("total_steps", total_steps))
        train_s, val_s, validations = state.get("clock", (0.0, 0.0, 0))
        clock = _Clock(float(train_s), float(val_s), int(validations))
        rng = state["rng"][dist.rank] if dist.rank < len(state["rng"]) else state["rng"][0]
        _set_rng_state(rng, generator, device)

    net: torch.nn.Module = model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.run.compile:
        net = cast(torch.nn.Module, torch.compile(net))  # an OptimizedModule; typed as a callable
    amp = resolve_precision(config.run.precision, device)

    resolution = {"mpp": config.data.train_mpp, "input_mpp": config.data.image_mpp}

    def averaged() -> AbstractContextManager[torch.nn.Module]:
        """The model to validate and save: the weight average when ``schedule.ema_decay``."""
        return ema.applied() if ema is not None else nullcontext(model)

    def save_best() -> None:  # main process only
        with averaged() as weights:
            save_model_weights(weights, run.best, config.run.shard_mb,
                               step=step, epoch=step / steps_per_epoch, **resolution)

    def save_last() -> None:  # every process: the RNG states of all ranks are gathered
        rng_all = [_rng_state(generator, device)]
        if dist.enabled:
            gathered: list = [None] * dist.world_size
            torch.distributed.all_gather_object(gathered, rng_all[0])
            rng_all = gathered
        if not dist.is_main:
            return
        extra = {"step": step, "epoch": step / steps_per_epoch, **resolution}
        save_state(run.state, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
            "best_score": best, "rng": rng_all, "config": json.dumps(config.to_dict()),
            "total_steps": total_steps, "clock": list(clock),
            **({"ema": ema.state_dict()} if ema is not None else {})})
        with averaged() as weights:
            save_model_weights(weights, run.last, config.run.shard_mb, **extra)

    start_time = time.monotonic()
    invocation_limit = step + config.run.max_steps if config.run.max_steps else None
    val_steps = steps_per_epoch * config.run.val_every

    def stop_at() -> int:
        return total_steps if invocation_limit is None else min(total_steps, invocation_limit)

    def resize_to_budget() -> int:  # total steps that fit what is left of schedule.budget_min
        if not s.budget_min or step < _CALIBRATION_STEPS:
            return total_steps
        return budget_steps(step, 60 * s.budget_min - clock.train_s - clock.val_s,
                            clock.train_s / step,
                            clock.val_s / clock.validations if clock.validations else 0.0,
                            val_steps if config.run.validate and data.val_images else 0)

    def current_lr(epoch: int) -> float:
        if s.lr_schedule == "cosine":
            return cosine_lr(step, total_steps, s.lr0, s.lr_floor, s.warmup_steps)
        return learning_rate(epoch, s.lr0, s.lr_decay_epochs)
    prog = make_progress(progress if dist.is_main else False,
                         TextColumn("loss {task.fields[loss]:.4f} lr {task.fields[lr]:.2e} "
                                    "{task.fields[sps]:.1f} samples/s"))
    model.train()
    with prog:
        task = prog.add_task("training", total=total_steps, completed=step, loss=0.0, lr=0.0,
                             sps=0.0)
        while step < stop_at():
            epoch = step // steps_per_epoch
            lr = current_lr(epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            batch = data.sampler.sample(s.batch_size, generator)
            x = model_input(batch.image, config.run.channels_last)
            loss, parts = training_step(net, optimizer, x, batch.target, batch.weight, amp=amp,
                                        aux_weight=aux_weight(epoch), grad_clip=s.grad_clip,
                                        parameters=model.parameters(),
                                        dice_weight=s.dice_weight)
            if ema is not None:
                ema.update()
            step += 1
            step_s = time.perf_counter() - t0
            clock = clock._replace(train_s=clock.train_s + step_s)
            sps = s.batch_size * dist.world_size / step_s
            if step == _CALIBRATION_STEPS and s.budget_min:
                total_steps = resize_to_budget()
                prog.update(task, total=total_steps)
            last = step == stop_at()
            if step % config.run.log_every == 0 or last:
                # reading the loss synchronises a GPU, so only at log steps
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise MicronetError(f"step {step}: loss is {loss_value}; lower "
                                        "schedule.lr0 or use run.precision=fp32")
                prog.update(task, completed=step, loss=loss_value, lr=lr, sps=sps)
            if dist.is_main and (step % config.run.log_every == 0 or last):
                run.append_log({"type": "step", "step": step, "epoch": epoch + 1,
                                "loss": loss_value, "lr": lr,
                                **{k: float(v) for k, v in parts.items()},
                                "samples_per_s": sps,
                                "elapsed_s": time.monotonic() - start_time})
            finished = step == total_steps
            end_of_epoch = step % steps_per_epoch == 0 or finished
            if end_of_epoch:
                record = {"type": "epoch", "epoch": epoch + 1, "step": step, "lr": lr,
                          "total_steps": total_steps}
                due = (epoch + 1) % config.run.val_every == 0 or finished
                if config.run.validate and data.val_images and dist.is_main and due:
                    t_val = time.perf_counter()
                    with averaged() as weights:
                        validation = _validate(weights, data, device, config.data)
                    clock = clock._replace(val_s=clock.val_s + time.perf_counter() - t_val,
                                           validations=clock.validations + 1)
                    record.update(validation.scores)
                    score = validation.scores[config.run.best_metric]
                    eligible = step >= config.run.best_after * total_steps
                    if eligible and score > best:
                        best = score
                        save_best()
                        record["best"] = True  # this validation's weights are `best` now
                        # the best checkpoint's grid-tuned post-processing, until `micronet tune`
                        run.write_postprocess(validation.postprocess, validation.table,
                                              data.val_names)
                if dist.is_main:
                    run.append_log(record)
                    console.print(f"epoch {epoch + 1}/{math.ceil(total_steps / steps_per_epoch)}"
                                  ": " + ", ".join(k if isinstance(v, bool) else f"{k} {v:.4g}"
                                                   for k, v in record.items() if k != "type"))
                if s.budget_min and not finished:
                    total_steps = resize_to_budget()
                    prog.update(task, total=total_steps)
            timed_out = (config.run.time_limit_min and
                         time.monotonic() - start_time > 60 * config.run.time_limit_min)
            if end_of_epoch or step % config.run.checkpoint_every == 0 or last or timed_out:
                save_last()
            if timed_out:
                break
    if dist.is_main and best < 0 and not run.best.exists():
        save_best()  # no validation ran: the last weights are the best we have
    if ema is not None:
        ema.copy_to_model()  # the run's result is the averaged network
    return TrainResult(run_dir, model, step, best)


def _validate(model: torch.nn.Module, data: TrainingData, device: torch.device,
              data_config: DataConfig) -> Validation:
    from .validate import validate

    return validate(model, data.val_images, data.val_labels, device,
                    mpp=data_config.train_mpp, image_mpp=data_config.image_mpp)


def write_summary(run_dir: Path, result: TrainResult, best_metric: str) -> None:
    """A small JSON summary beside the checkpoints (used by reports and the model card):
    steps, the validation score of ``best`` and which metric it is, parameters."""
    summary = {"step": result.step, "best_metric": best_metric, "best_score": result.best_score,
               "params": int(sum(p.numel() for p in result.model.parameters()))}
    RunFolder(run_dir).write_summary(summary)


