"""One mixing path: the offline writer, training and SAMixUp share the methods, the α table,
the CutMix λ correction, the shard-name pattern and the device rule."""

from __future__ import annotations

import pytest
import torch

from samix_hub import SAMixUp
from samix_hub.errors import UserError
from samix_hub.export.mixed_plan import plan_shard
from samix_hub.export.mixed_writer import mix_group
from samix_hub.format.mixed import SHARD_RE, shard_name
from samix_hub.mixing import (
    DEFAULT_ALPHA,
    LAM_MARGIN,
    CutMix,
    MixMethod,
    MixParams,
    MixUp,
    SAMix,
    box_lam,
    build_method,
    finish_mask,
    margin_fallback,
    mask_adjust,
)
from samix_hub.train.config import TrainConfig
from samix_hub.train.distributed import resolve_device
from samix_hub.train.scenario import get_scenario


def _plan(method: str, mask_adjust: float = 0.0):
    return plan_shard(
        0, num=6, length=10, shard_size=6, batch_size=6, method=method, alpha=0.7, seed=3,
        image_size=(12, 10), mask_adjust=mask_adjust,
    )[0]  # fmt: skip


def _images(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 3, 12, 10), generator=g, dtype=torch.uint8)


def test_one_alpha_table() -> None:
    assert DEFAULT_ALPHA == {
        "vanilla": 1.0, "mixup": 1.0, "cutmix": 0.2, "automix": 2.0, "samix": 2.0,
        "samix-p": 2.0, "moco": 1.0,
    }  # fmt: skip
    for method in ("mixup", "cutmix", "samix"):
        kwargs = {"mask_fn": lambda x, p, lam: torch.ones_like(x[:, :1])}
        assert build_method(method, **kwargs).alpha == DEFAULT_ALPHA[method]  # type: ignore[attr-defined]
    assert SAMixUp(lambda x, p, lam: x[:, :1], num_classes=3).alpha == DEFAULT_ALPHA["samix"]
    for method in ("mixup", "cutmix", "samix"):
        cfg = TrainConfig(data="digits", out="unused", backbone="resnet18", method=method)
        cfg.resolve()
        assert cfg.alpha == DEFAULT_ALPHA[method]
    for method in ("moco", "mixup", "samix"):
        ssl = TrainConfig(
            data="digits", out="unused", backbone="resnet18", scenario="ssl", method=method
        )
        get_scenario("ssl").resolve(ssl)
        assert ssl.alpha == DEFAULT_ALPHA[method]


def test_cutmix_plan_uses_the_method_mask_and_box_lam() -> None:
    plan = _plan("cutmix")
    assert plan.boxes is not None and len(plan.boxes) == 6
    kept = torch.tensor([box_lam(b, 12, 10) for b in plan.boxes])
    assert torch.equal(plan.lam, kept)
    mask, mixed = mix_group(_images(), plan, "cutmix", None, torch.device("cpu"))
    for i, (y0, y1, x0, x1) in enumerate(plan.boxes):
        assert mask[i, :, y0:y1, x0:x1].eq(0).all()
        assert float(mask[i].mean()) == pytest.approx(float(plan.lam[i]), abs=1e-6)
    params = MixParams(lam=plan.lam, partner=plan.partner, boxes=plan.boxes)
    assert torch.equal(CutMix().mask(_images().float(), params), mask)


def test_mixup_per_sample_lam() -> None:
    plan = _plan("mixup")
    x = _images().float() / 255
    mask, mixed = mix_group(_images(), plan, "mixup", None, torch.device("cpu"))
    lam = plan.lam.view(-1, 1, 1, 1)
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[plan.partner], atol=1e-6)
    out = MixUp().apply(x, torch.arange(6), MixParams(lam=plan.lam, partner=plan.partner))
    assert torch.equal(out.images, mixed) and torch.equal(out.lam, plan.lam)


def test_samix_plan_per_sample_adjust_matches_finish_mask() -> None:
    plan = _plan("samix", mask_adjust=0.5)
    assert 0 < int(plan.adjust.sum()) < 6  # some samples adjusted, some not

    def raw(x: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        return x[:, :1] * 0.5 + 0.25

    mask, _ = mix_group(_images(), plan, "samix", raw, torch.device("cpu"))
    x = _images().float() / 255
    base = raw(x, plan.partner, plan.lam)
    want = margin_fallback(
        torch.where(plan.adjust.view(-1, 1, 1, 1), mask_adjust(base, plan.lam), base), plan.lam
    )
    assert torch.equal(mask, want)
    assert torch.equal(finish_mask(base, plan.lam, plan.adjust), want)
    params = MixParams(lam=plan.lam, partner=plan.partner, adjust=plan.adjust)
    assert torch.equal(SAMix(raw).mask(x, params), want)


def test_shard_name_matches_the_one_pattern() -> None:
    m = SHARD_RE.match(shard_name(3, 12))
    assert m is not None and (int(m.group(1)), int(m.group(2))) == (3, 12)
    assert SHARD_RE.match("train-3-of-12.parquet") is None


def test_device_rule() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--device cuda: no GPU is available"):
            resolve_device("cuda")
    with pytest.raises(UserError, match="not a device"):
        resolve_device("gpu0")


def test_samixup_mixes_through_its_mix_method() -> None:
    """SAMixUp's plan is a MixMethod: its ``mix`` of the recorded draws is SAMixUp's output."""
    images = _images(8).float() / 255

    def raw(x: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        return x[:, :1] * 0.5 + 0.25

    mixup = SAMixUp(raw, num_classes=4, switch_prob=0.5, cutmix_alpha=1.0, mode="elem", seed=0)
    assert isinstance(mixup.plan, MixMethod)
    for _ in range(3):
        mixed, targets = mixup(images, torch.arange(8) % 4)
        params = mixup.last_params
        assert params is not None
        mask, again = mixup.plan.mix(images, params)
        assert torch.equal(again, mixed)
        assert torch.allclose(targets.sum(1), torch.ones(8))
        lam = params.lam_rows()
        assert torch.allclose(mask.mean(dim=(1, 2, 3))[lam <= LAM_MARGIN], lam[lam <= LAM_MARGIN])
