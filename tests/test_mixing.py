"""Mixing methods: torchvision parity, CutMix λ correction, determinism, label weights."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from samix_hub.mixing import CutMix, MixParams, MixUp, SAMix, Vanilla, sample_lam, sample_partner
from samix_hub.mixing.masks import margin_fallback


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g), torch.randint(5, (n,), generator=g)


def test_mixup_equals_torchvision_v2():
    images, labels = _batch()
    torch.manual_seed(3)  # torchvision draws λ from the global RNG
    tv_images, tv_labels = v2.MixUp(alpha=1.0, num_classes=5)(images.clone(), labels.clone())
    # torchvision pairs sample i with i - 1 (a roll by one); its λ is the weight of label_a in
    # a row whose two labels differ.
    partner = torch.roll(torch.arange(8), 1)
    row = int((labels != labels[partner]).nonzero()[0])
    lam = float(tv_labels[row, labels[row]])
    out = MixUp().apply(images, labels, MixParams(lam=torch.tensor(lam), partner=partner))
    assert torch.allclose(out.images, tv_images, atol=1e-6)
    onehot = lambda y: torch.nn.functional.one_hot(y, 5).float()  # noqa: E731
    soft = out.lam[:, None] * onehot(out.label_a) + (1 - out.lam[:, None]) * onehot(out.label_b)
    assert torch.allclose(soft, tv_labels, atol=1e-6)
    assert torch.allclose(soft.sum(1), torch.ones(8))


def test_cutmix_lam_is_corrected_area():
    images, labels = _batch()
    method = CutMix(alpha=1.0)
    g = torch.Generator().manual_seed(5)
    for _ in range(20):
        out = method(images, labels, g)
        pasted = (out.mask == 0).float().mean(dim=(1, 2, 3))
        assert torch.allclose(out.lam, 1 - pasted, atol=1e-6)
        expect = out.mask * images + (1 - out.mask) * images[out.partner]
        assert torch.equal(out.images, expect)
        assert ((out.lam >= 0) & (out.lam <= 1)).all()


def test_methods_deterministic_and_independent_of_global_rng():
    images, labels = _batch()
    for method in (MixUp(), CutMix(1.0)):
        torch.manual_seed(0)
        a = method(images, labels, torch.Generator().manual_seed(11))
        torch.manual_seed(999)
        torch.rand(100)
        b = method(images, labels, torch.Generator().manual_seed(11))
        assert torch.equal(a.images, b.images) and torch.equal(a.lam, b.lam)
        assert torch.equal(a.label_b, b.label_b)
        c = method(images, labels, torch.Generator().manual_seed(12))
        assert not torch.equal(a.images, c.images)


def test_sample_lam_range_and_moments():
    g = torch.Generator().manual_seed(0)
    lam = sample_lam(2.0, n=20000, rng=g)
    assert lam.min() >= 0 and lam.max() <= 1
    assert lam.mean().item() == pytest.approx(0.5, abs=0.01)
    assert lam.var().item() == pytest.approx(0.05, abs=0.005)  # Beta(2,2): 1/20
    assert sample_lam(1.0, rng=g).dim() == 0
    with pytest.raises(ValueError, match="alpha"):
        sample_lam(0.0)
    perm = sample_partner(10, g)
    assert sorted(perm.tolist()) == list(range(10))


def test_vanilla_keeps_batch():
    images, labels = _batch()
    out = Vanilla()(images, labels)
    assert torch.equal(out.images, images) and torch.equal(out.lam, torch.ones(8))


def test_samix_margin_fallback_and_labels_use_sampled_lam():
    images, labels = _batch()

    def fn(x, partner, lam):
        return torch.full((x.shape[0], 1, 16, 16), 0.8)  # mean 0.8 whatever λ is

    method = SAMix(fn, alpha=2.0)
    partner = torch.arange(8).flip(0)
    out = method.apply(images, labels, MixParams(lam=torch.tensor(0.3), partner=partner))
    assert torch.allclose(out.lam, torch.full((8,), 0.3))  # labels: sampled λ, not mask mean
    assert torch.allclose(out.mask, torch.full_like(out.mask, 0.8))
    out = method.apply(images, labels, MixParams(lam=torch.tensor(0.05), partner=partner))
    assert torch.allclose(out.mask, torch.full_like(out.mask, 0.05))  # fallback to MixUp
    assert torch.allclose(out.images, 0.05 * images + 0.95 * images[partner], atol=1e-6)
    adjusted = method.apply(
        images, labels, MixParams(lam=torch.tensor(0.4), partner=partner, adjust=True)
    )
    assert adjusted.mask.mean().item() == pytest.approx(0.4, abs=1e-5)
    m = margin_fallback(torch.rand(3, 1, 2, 2), torch.tensor([0.08, 0.5, 0.92]))
    assert torch.all(m[0] == 0.08) and torch.all(m[2] == 0.92)
