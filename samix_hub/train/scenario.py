"""What a training scenario plugs into the loop: models, step functions, evaluation, state.

The loop (:mod:`samix_hub.train.loop`) owns everything common: data loading, DDP, AMP, the
optimizer and schedule, NaN checks, checkpoints, metrics and progress. A scenario (supervised
``sl`` here; self-supervised ``ssl`` and fine-tuning later) is a :class:`Scenario` registered with
:func:`register_scenario`: a model builder plus one step function per method.

A step function ``step(ctx, images, labels) -> {"loss": ..., component: ...}`` computes its losses
and calls ``ctx.backward(loss)`` for each branch itself, one after another (docs/algorithm.md "Online supervised SAMix" sums the branches; running their backward passes separately frees each branch's
activations before the next forward, which gives the same gradients at a lower peak memory).
The loop then checks the returned values are finite and steps the optimizer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import torch
import torch.nn as nn

from samix_hub.data.specs import DataSource
from samix_hub.errors import UserError
from samix_hub.format.repo_ref import Resolve, resolve_local
from samix_hub.mixing import MixMethod
from samix_hub.models import Mixer
from samix_hub.models.classifier import Classifier
from samix_hub.models.generator import MaskGenerator
from samix_hub.train.config import TrainConfig
from samix_hub.train.distributed import DistInfo

__all__ = [
    "StepContext",
    "StepFn",
    "TrainModules",
    "ClassifierModules",
    "Scenario",
    "modules_as",
    "total_loss",
    "to_layout",
    "register_scenario",
    "get_scenario",
    "SCENARIOS",
]


@dataclass(kw_only=True)
class TrainModules:
    """The modules of a run; each scenario subclasses it with its own (typed) fields.

    ``model``, ``ema`` and ``mixer`` are what checkpoints store under those keys (ema and mixer
    where the method has them). ``wrapped`` holds the versions the step calls (DDP wrappers on
    several ranks, the modules themselves otherwise) under the same names: ``"model"``,
    ``"mixer"``. ``stat_batch``: the test images the mixer's statistics are computed on
    (:func:`~samix_hub.train.evaluate.mixer_statistics`, loaded once).
    """

    model: nn.Module
    ema: nn.Module | None = None
    mixer: Mixer | None = None
    wrapped: dict[str, nn.Module] = field(default_factory=dict)
    stat_batch: torch.Tensor | None = None

    def call(self, name: str) -> nn.Module:
        module = self.wrapped.get(name)
        if module is not None:
            return module
        own = {"model": self.model, "ema": self.ema, "mixer": self.mixer}.get(name)
        if own is None:
            raise KeyError(f"this run has no module {name!r}")
        return own

    def trainable(self) -> list[nn.Module]:
        return [m for m in (self.model, self.mixer) if m is not None]

    def require_mixer(self) -> Mixer:
        """The mixer of a method that trains one (an error in any other)."""
        if self.mixer is None:
            raise RuntimeError(f"{type(self).__name__}: this method has no mixer")
        return self.mixer


@dataclass(kw_only=True)
class ClassifierModules(TrainModules):
    """A classifier run (``sl``, ``finetune`` and ``teacher`` extend it).

    ``ema``: the EMA copy (every ``sl`` method; AutoMix/SAMix score the mixer with it);
    ``mixer``: AutoMix/SAMix; ``frozen``: the SAMix^P generator; ``mix_method``: the batch mixing
    of MixUp, CutMix and SAMix^P; ``generator_provenance``: where ``frozen`` came from.
    """

    model: Classifier
    ema: Classifier | None = None
    frozen: MaskGenerator | None = None
    mix_method: MixMethod | None = None
    generator_provenance: dict[str, Any] | None = None

    def require_ema(self) -> Classifier:
        if self.ema is None:
            raise RuntimeError("this method keeps no EMA classifier")
        return self.ema


M = TypeVar("M", bound=TrainModules)
K = TypeVar("K", bound=TrainModules)


def modules_as(modules: TrainModules, kind: type[K]) -> K:
    """``modules`` as the scenario's own :class:`TrainModules` subclass ``kind`` (checked)."""
    if not isinstance(modules, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(modules).__name__}")
    return modules


@dataclass
class EvalContext:
    """What a scenario's evaluation reads besides its modules: the data, the run's options, the
    process group, the loop's autocast and whether batches go channels-last."""

    data: DataSource
    cfg: TrainConfig
    info: DistInfo
    autocast: Callable[[], contextlib.AbstractContextManager[Any]]
    channels_last: bool


@dataclass
class StepContext(Generic[M]):
    """Everything a step function may use; built by the loop for every step."""

    modules: M
    cfg: TrainConfig
    device: torch.device
    rng: torch.Generator
    step: int
    total_steps: int
    backward: Callable[[torch.Tensor], None]
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    channels_last: bool = False

    @property
    def alpha(self) -> float:
        """The resolved Beta(α, α) parameter (every mixing method has one after ``resolve``)."""
        if self.cfg.alpha is None:
            raise RuntimeError("TrainConfig.alpha is unresolved (call Scenario.resolve first)")
        return float(self.cfg.alpha)

    def no_sync(self, name: str) -> contextlib.AbstractContextManager[Any]:
        """DDP's ``no_sync`` for all but the last backward through ``name`` in a step."""
        module = self.modules.call(name)
        no_sync = getattr(module, "no_sync", None)
        return no_sync() if callable(no_sync) else contextlib.nullcontext()


def to_layout(x: torch.Tensor, ctx: StepContext[Any]) -> torch.Tensor:
    """``x`` in the memory layout the run's models use (channels-last with ``--channels-last``)."""
    return x.contiguous(memory_format=torch.channels_last) if ctx.channels_last else x


StepFn = Callable[[StepContext[M], torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


def total_loss(parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ``"loss"`` a step returns: its components added in order."""
    values = list(parts.values())
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total


class Scenario(Generic[M]):
    """Base class; subclasses implement :meth:`build` and :meth:`step_fn` for their modules ``M``."""

    name: str = "base"
    methods: tuple[str, ...] = ()
    #: Turns a ``--generator`` / ``--backbone`` / ``--teacher`` SRC into a local folder; set by
    #: :func:`get_scenario` (the command line passes one that downloads Hub repos).
    sources: Resolve

    def resolve(self, cfg: TrainConfig) -> TrainConfig:
        return cfg.resolve()

    def build(self, cfg: TrainConfig, data: DataSource, device: torch.device) -> M:
        raise NotImplementedError

    def train_transform(
        self, cfg: TrainConfig, data: DataSource
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """Per-image training augmentation (run in the loader, seeded per epoch and image).

        Default: :func:`samix_hub.train.loader.train_transform`; ``ssl`` returns two views.
        """
        from samix_hub.train.loader import train_transform

        return train_transform(data.image_size)

    def step_fn(self, method: str) -> StepFn[M]:
        raise NotImplementedError

    def param_groups(self, modules: M, cfg: TrainConfig) -> list[dict[str, Any]]:
        """Optimizer parameter groups: every trainable parameter at ``cfg.lr`` by default."""
        params = [p for m in modules.trainable() for p in m.parameters() if p.requires_grad]
        return [{"params": params, "lr": cfg.lr}]

    def make_optimizer(self, modules: M, cfg: TrainConfig) -> torch.optim.Optimizer | None:
        """A scenario's own optimizer; None (the default): the loop's, over :meth:`param_groups`."""
        return None

    def make_scheduler(
        self, optimizer: torch.optim.Optimizer, cfg: TrainConfig, total: int, per_epoch: int
    ) -> Any:
        """A scenario's own per-step schedule (``step``, ``get_last_lr``, ``state_dict``,
        ``load_state_dict``) over ``total`` steps of ``per_epoch`` per epoch; None (the
        default): the loop's cosine."""
        return None

    def wrap(self, modules: M, info: DistInfo) -> None:
        """DDP wrappers (in ``modules.wrapped``) for the trainable modules, on several ranks."""
        if not info.enabled:
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [info.device.index] if info.device.type == "cuda" else None
        for name in ("model", "mixer"):
            module = getattr(modules, name)
            if module is not None and any(p.requires_grad for p in module.parameters()):
                modules.wrapped[name] = DDP(module, device_ids=ids)

    def run_config(self, cfg: TrainConfig, data: DataSource, modules: M) -> dict[str, Any]:
        """Scenario-specific keys of ``config.json`` (merged over the common ones)."""
        return {}

    def after_step(self, modules: M, step: int, total: int, cfg: TrainConfig) -> None:
        """After each optimizer step (EMA updates)."""

    def evaluate(self, modules: M, ev: EvalContext) -> dict[str, float]:
        """Metrics of this evaluation (merged into the run's ``metrics.jsonl`` line)."""
        return {}

    def state_dict(self, modules: M) -> dict[str, Any]:
        """Checkpoint entries ``model``, ``ema``, ``mixer`` (state dicts or None)."""
        return {
            "model": _plain(modules.model),
            "ema": _plain(modules.ema) if modules.ema is not None else None,
            "mixer": modules.mixer.state_dict() if modules.mixer is not None else None,
        }

    def load_state_dict(self, modules: M, state: dict[str, Any]) -> None:
        _load_plain(modules.model, state["model"])
        if modules.ema is not None and state.get("ema") is not None:
            _load_plain(modules.ema, state["ema"])
        if modules.mixer is not None and state.get("mixer") is not None:
            modules.mixer.load_state_dict(state["mixer"])


def _plain(module: nn.Module) -> dict[str, torch.Tensor]:
    """timm key names: the ``net`` inside a :class:`~samix_hub.models.classifier.Classifier`."""
    return getattr(module, "net", module).state_dict()


def _load_plain(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    getattr(module, "net", module).load_state_dict(state)


SCENARIOS: dict[str, Callable[[], Scenario[Any]]] = {}


def register_scenario(name: str, factory: Callable[[], Scenario[Any]]) -> None:
    SCENARIOS[name] = factory


def get_scenario(name: str, sources: Resolve = resolve_local) -> Scenario[Any]:
    """A new scenario ``name`` whose SRC arguments resolve through ``sources``."""
    if name in SCENARIOS:
        scenario = SCENARIOS[name]()
        scenario.sources = sources
        return scenario
    raise UserError(f"unknown scenario {name!r} (one of {', '.join(sorted(SCENARIOS))})")
