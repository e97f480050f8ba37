"""The training loop: one short, explicit loop for every scenario and method (nanoGPT style).

Per step: seed this step's mixing generator from ``(seed, rank, step)``, run the method's step
function (it runs its own backward passes), check every loss component is finite (all-reduced over
ranks, before the optimizer touches the weights), step the optimizer and the cosine schedule, then
the scenario's EMA update. Per epoch: evaluate, append to ``metrics.jsonl``, checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .._version import __version__
from ..data.specs import DataSource, DataSpecError, load_data
from ..errors import UserError
from ..fileio import atomic_write_json, check_writable_dir
from ..fileio.locking import folder_lock
from .checkpoint import (
    CHECKPOINT,
    append_jsonl,
    check_run_folder,
    load_checkpoint,
    read_jsonl,
    remove_run_temps,
    save_checkpoint,
    truncate_jsonl,
)
from .config import RUN_FORMAT_VERSION, RUN_KIND, TrainConfig, legacy_values
from .distributed import DistInfo, all_reduce_sum, broadcast_buffers, init_distributed, shutdown
from .loader import ResumableSampler, SeededTransform, mix_seed, train_loader
from .scenario import StepContext, get_scenario

__all__ = ["train", "NonFiniteLossError", "run_config_dict", "config_from_run", "RUNTIME_KEYS"]

#: Options that may change when a run is resumed (they do not change what is computed).
RUNTIME_KEYS = frozenset(
    {"device", "amp", "workers", "eval_every", "checkpoint_every", "eval_batch_size", "download"}
    | {"out", "channels_last"}
)
#: ``config.json`` keys that describe a run but are recomputed on resume (not options).
RESUME_INFO_KEYS = frozenset({"samix_hub_version", "teacher_head"})


class NonFiniteLossError(UserError):
    """A NaN/Inf loss: the run stops before the optimizer step; the last checkpoint is kept."""


def run_config_dict(
    cfg: TrainConfig, data: DataSource, scenario_keys: dict[str, Any], world: int
) -> dict[str, Any]:
    """``config.json``: the contract keys first, then every resolved option."""
    options = cfg.to_dict()
    source = options.pop("generator")
    options.pop("image_size")
    extra = options.pop("extra") or {}
    return {
        "kind": RUN_KIND,
        "format_version": RUN_FORMAT_VERSION,
        "scenario": cfg.scenario,
        "method": cfg.method,
        "backbone": cfg.backbone,
        "num_classes": data.num_classes,
        "class_names": [str(c) for c in data.class_names],
        "data": cfg.data,
        "image_size": list(data.image_size),
        "in_chans": data.channels,
        "mean": list(data.mean),
        "std": list(data.std),
        "stage": cfg.stage,
        "mixer": None,
        "generator": None,
        "generator_source": source,
        "samix_hub_version": __version__,
        "world_size": world,
        **{k: v for k, v in options.items() if k not in ("scenario", "method", "backbone")},
        **extra,
        **scenario_keys,
    }


def config_from_run(run: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` a run folder's ``config.json`` was written from."""
    data = {**legacy_values(run), **run}
    data["generator"] = run.get("generator_source")
    data["image_size"] = tuple(run["image_size"]) if run.get("image_size") else None
    return TrainConfig.from_dict(data)


def _check_resumable(saved: dict[str, Any], new: dict[str, Any], path: Path) -> None:
    saved = {**legacy_values(saved), **saved}
    skip = RUNTIME_KEYS | RESUME_INFO_KEYS
    diff = [
        k
        for k in sorted(set(saved) | set(new))
        if k not in skip and saved.get(k) != new.get(k) and not _same_mixer(k, saved, new)
    ]
    if diff:
        k = diff[0]
        raise UserError(
            f"{path}: cannot resume with a different {k} ({saved.get(k)!r} in the run, "
            f"{new.get(k)!r} now); use another --out for a new run"
        )


def _same_mixer(key: str, saved: dict[str, Any], new: dict[str, Any]) -> bool:
    """Mixer configs equal once the fields an older version did not write take their defaults."""
    a, b = saved.get(key), new.get(key)
    if key != "mixer" or not isinstance(a, dict) or not isinstance(b, dict):
        return False
    from ..models import MixerConfig

    try:
        return MixerConfig.from_dict(a).to_dict() == MixerConfig.from_dict(b).to_dict()
    except (TypeError, ValueError):
        return False


def _optimizer(groups: list[dict[str, Any]], cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (the reference recipe, docs/algorithm.md "Online supervised SAMix") or AdamW over the scenario's groups."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine from each group's lr; to ``min_lr`` (one lr) or to ``lr_g * min_lr / lr`` (several:
    a mixer with its own lr keeps its ratio to the backbone's, as the reference's two cosines)."""
    lrs = {float(g["lr"]) for g in optimizer.param_groups}
    min_lr = cfg.min_lr or 0.0
    if len(lrs) <= 1:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=min_lr)
    ratio = min_lr / cfg.lr

    def factor(step: int) -> float:
        return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _amp(device: torch.device, enabled: bool) -> tuple[Callable[[], Any], Any]:
    """Autocast factory (bf16 where supported, else fp16 with a GradScaler) on CUDA only."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: no GPU is available")
    return torch.device(name)


def _warn_short_ema(cfg: TrainConfig, total: int, show: bool) -> None:
    """Online SAMix/AutoMix score the mixer with the EMA classifier and publish its encoder.

    The reference momentum (0.999, docs/algorithm.md "Online supervised SAMix") averages over ~1,000 steps, made for runs
    of 10^5 steps. In a run of a few hundred steps the EMA stays near its random initialisation,
    so the mixer learns from a random classifier (measured on ``digits``: after 176 steps at
    0.999 the EMA scored 16 % top-1 while the online model scored 87 %). Say so.
    """
    if not show or cfg.scenario != "sl" or cfg.method not in ("samix", "automix"):
        return
    horizon = 1.0 / max(1.0 - cfg.ema_momentum, 1e-12)
    if horizon > 0.25 * total:
        print(
            f"warning: --ema-momentum {cfg.ema_momentum} averages over ~{horizon:.0f} steps but "
            f"the run has {total}: the EMA classifier that trains the mixer (and becomes the "
            "generator's encoder) will stay near its initialisation; for short runs pass e.g. "
            f"--ema-momentum {_suggest_momentum(total)} --ema-end-momentum 0.999",
            file=sys.stderr,
        )


def _suggest_momentum(total: int) -> float:
    """A momentum whose horizon is ~2 % of the run, rounded to a readable value."""
    for m in (0.999, 0.995, 0.99, 0.98, 0.95, 0.9):
        if 1.0 / (1.0 - m) <= max(0.02 * total, 10):
            return m
    return 0.9


def train(cfg: TrainConfig, resume: bool = False, quiet: bool = False) -> Path:
    """Run (or resume) a training run into ``cfg.out``; returns the run folder.

    The run folder is checked for writing first and locked for the whole run (rank 0 holds
    :func:`samix_hub.fileio.locking.folder_lock`): a second run into the same folder is refused.
    """
    info = init_distributed(_device(cfg.device))
    try:
        if not info.is_main:
            return _train(cfg, info, resume, quiet)
        check_writable_dir(cfg.out, "--out")
        check_run_folder(Path(cfg.out))  # again under the lock, in _train
        with folder_lock(cfg.out, f"{cfg.scenario} run"):
            remove_run_temps(Path(cfg.out))
            return _train(cfg, info, resume, quiet)
    finally:
        shutdown(info)


def _train(cfg: TrainConfig, info: DistInfo, resume: bool, quiet: bool) -> Path:
    device = info.device
    scenario = get_scenario(cfg.scenario)
    cfg = scenario.resolve(cfg)
    run_dir = Path(cfg.out)
    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.exists() and not resume:
        raise UserError(f"{run_dir}: holds a run already; pass --resume to continue it")
    check_run_folder(run_dir)
    try:
        data = load_data(cfg.data, download=cfg.download, image_size=cfg.image_size)
    except DataSpecError as exc:
        raise UserError(str(exc)) from None
    if cfg.image_size:
        data.image_size = tuple(cfg.image_size)  # type: ignore[assignment]
    mods = scenario.build(cfg, data, device)
    channels_last = cfg.channels_last and device.type == "cuda"
    if channels_last:
        for m in (mods.model, mods.ema):
            if m is not None:
                m.to(memory_format=torch.channels_last)
    autocast, scaler = _amp(device, cfg.amp)

    optimizer = scenario.make_optimizer(mods, cfg)
    if optimizer is None:
        optimizer = _optimizer(scenario.param_groups(mods, cfg), cfg)
    train_ds = SeededTransform(data.train, scenario.train_transform(cfg, data), cfg.seed)
    sampler = ResumableSampler(train_ds, info.world, info.rank, cfg.seed)
    spe = sampler.num_samples // cfg.batch_size
    if spe == 0:
        raise UserError(
            f"{cfg.data}: {len(train_ds)} training images give less than one batch of "
            f"{cfg.batch_size} per device (lower --batch-size)"
        )
    total = cfg.epochs * spe if cfg.max_steps is None else min(cfg.epochs * spe, cfg.max_steps)
    scheduler = scenario.make_scheduler(optimizer, cfg, total, spe)
    if scheduler is None:
        scheduler = _scheduler(optimizer, cfg, total)
    run_cfg = run_config_dict(cfg, data, scenario.run_config(cfg, data, mods), info.world)
    _warn_short_ema(cfg, total, info.is_main and not quiet)

    step = 0
    metrics_path, steps_path = run_dir / "metrics.jsonl", run_dir / "steps.jsonl"
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, map_location=device)
        _check_resumable(state["config"], run_cfg, run_dir)
        scenario.load_state_dict(mods, state)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step = int(state["step"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if info.is_main:
            truncate_jsonl(metrics_path, step)
            truncate_jsonl(steps_path, step)
    else:
        torch.manual_seed(mix_seed(cfg.seed, info.rank))  # dropout / drop-path only
        if info.is_main:
            for p in (metrics_path, steps_path):
                p.unlink(missing_ok=True)
    if info.is_main:
        atomic_write_json(run_dir / "config.json", run_cfg)
    scenario.wrap(mods, info)
    step_fn = scenario.step_fn(cfg.method)
    show = info.is_main and not quiet

    def checkpoint() -> None:
        if not info.is_main:
            return
        save_checkpoint(
            run_dir,
            {
                **scenario.state_dict(mods),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "step": step,
                "epoch": step // spe,
                "rng": {"torch": torch.get_rng_state(), "scheme": "per-step seeds"},
                "config": run_cfg,
            },
        )

    def backward(loss: torch.Tensor, branch: str) -> None:
        (scaler.scale(loss) if scaler is not None else loss).backward()

    gen = torch.Generator()
    # Loss sums since the last evaluation (rebuilt from steps.jsonl on resume).
    done = [r for r in read_jsonl(steps_path) if r["step"] > _last_eval(metrics_path)]
    sums: dict[str, float] = {}
    for r in done:
        for k, v in r.items():
            if k.startswith("loss"):
                sums[k] = sums.get(k, 0.0) + v
    count = len(done)
    last_top1: float | None = None
    images_per_s = 0.0
    while step < total:
        epoch, offset = divmod(step, spe)
        sampler.set_epoch(epoch)
        sampler.set_start(offset * cfg.batch_size)
        train_ds.set_epoch(epoch)
        loader = train_loader(
            train_ds, cfg.batch_size, sampler, cfg.workers, pin_memory=device.type == "cuda"
        )
        bar = tqdm(
            total=min(spe, total - epoch * spe),
            initial=offset,
            desc=f"epoch {epoch + 1}/{math.ceil(total / spe)}",
            unit="step",
            disable=not show,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=False,
        )
        for images, labels in loader:
            t0 = time.perf_counter()
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            gen.manual_seed(mix_seed(cfg.seed, info.rank, step, 0x5A))
            optimizer.zero_grad(set_to_none=True)
            ctx = StepContext(
                mods, cfg, device, gen, step, total, backward, autocast, channels_last
            )
            losses = step_fn(ctx, images, labels)
            values = _finite_losses(losses, info, step, epoch, ckpt_path)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            scenario.after_step(mods, step, total, cfg)
            step += 1
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            dt = time.perf_counter() - t0
            rate = cfg.batch_size * info.world / max(dt, 1e-9)
            images_per_s = rate if images_per_s == 0 else 0.9 * images_per_s + 0.1 * rate
            if info.is_main:
                append_jsonl(steps_path, {"step": step, "epoch": epoch + 1, "lr": lr, **values})
            post = {"loss": f"{values['loss']:.3f}", "img/s": f"{images_per_s:.0f}"}
            if last_top1 is not None:
                post["top1"] = f"{last_top1:.1f}"
            bar.set_postfix(post, refresh=False)
            bar.update(1)
            if (
                cfg.checkpoint_every
                and step % cfg.checkpoint_every == 0
                and step % spe
                and step < total
            ):
                checkpoint()
            if step >= total:
                break
        bar.close()
        epochs_done = math.ceil(step / spe)
        if cfg.eval_every and (epochs_done % cfg.eval_every == 0 or step >= total):
            record: dict[str, Any] = {"epoch": epochs_done, "step": step}
            broadcast_buffers([mods.model, mods.ema, mods.mixer], info)
            record.update(scenario.evaluate(mods, data, cfg, info, autocast, channels_last))
            record["train_loss"] = sums.get("loss", 0.0) / max(count, 1)
            for k, v in sums.items():
                if k != "loss":
                    record[f"train_{k}"] = v / max(count, 1)
            record["lr"] = scheduler.get_last_lr()[0]
            record["images_per_s"] = images_per_s
            sums, count = {}, 0
            last_top1 = record.get("top1")
            if info.is_main:
                append_jsonl(metrics_path, record)
                if not quiet:
                    tqdm.write(_summary(record), file=sys.stderr)
        checkpoint()
    return run_dir


def _last_eval(metrics_path: Path) -> int:
    rows = read_jsonl(metrics_path)
    return int(rows[-1]["step"]) if rows else 0


def _finite_losses(
    losses: dict[str, torch.Tensor], info: DistInfo, step: int, epoch: int, ckpt: Path
) -> dict[str, float]:
    """Loss components averaged over ranks; a NaN/Inf anywhere stops every rank with one error."""
    keys = list(losses)
    vec = torch.stack([losses[k].detach().float().reshape(()) for k in keys])
    vec = all_reduce_sum(vec, info) / info.world
    values = dict(zip(keys, vec.tolist(), strict=True))
    bad = [k for k, v in values.items() if not math.isfinite(v) and k != "loss"]
    bad = bad or [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        shown = ", ".join(f"{k}={values[k]}" for k in keys)
        kept = (
            f"last good checkpoint kept: {ckpt}" if ckpt.exists() else "no checkpoint written yet"
        )
        raise NonFiniteLossError(
            f"non-finite loss at step {step + 1} (epoch {epoch + 1}) in {bad[0]} ({shown}); "
            f"{kept}. Lower --lr or check the data"
        )
    return values


def _summary(record: dict[str, Any]) -> str:
    parts = [f"epoch {record['epoch']} step {record['step']}"]
    for key in ("train_loss", "top1", "top5", "ema_top1", "ema_top5"):
        if key in record:
            parts.append(
                f"{key} {record[key]:.3f}" if "loss" in key else f"{key} {record[key]:.2f}"
            )
    return "  ".join(parts)
