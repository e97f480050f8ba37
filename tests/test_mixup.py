"""``samix_hub.SAMixUp``: soft targets as timm's Mixup, normalised input, input checks, seeds,
the DataLoader ``collate_fn`` form and the ``datasets`` batched map function.

References are computed independently: timm's own ``mixup_target``, the generator called
directly on the sampled pairs, and the mix formula written out here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from timm.data.mixup import mixup_target

import samix_hub
from samix_hub import Generator, GeneratorConfig, MixerConfig, SAMixUp
from samix_hub.mixing import LAM_MARGIN
from samix_hub.mixing.read_size import DEFAULT_GENERATOR_SCALE, encoder_size
from samix_hub.mixing.samixup import MixInputError, datasets_map_fn, soft_targets

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


@pytest.fixture(scope="module")
def gen() -> Generator:
    """A tiny λ-exact generator whose mixer weights give non-flat masks."""
    cfg = GeneratorConfig(
        backbone="resnet18_cifar_w16",
        mixer=MixerConfig(in_channels=64, calibration="exact"),
        input_size=(16, 16),
    )
    torch.manual_seed(0)  # test set-up only
    g = Generator(cfg)
    rng = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in g.mixer.parameters():
            p.copy_(torch.randn(p.shape, generator=rng) * 0.3)
    return g


def _batch(n: int = 8, seed: int = 0, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.randint(10, (n,), generator=g)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_soft_targets_equal_timm_mixup_target() -> None:
    labels = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    flip = torch.arange(8).flip(0)  # timm pairs sample i with N - 1 - i
    for smoothing in (0.0, 0.1):
        ours = soft_targets(labels, 10, torch.tensor(0.3), flip, smoothing)
        assert torch.allclose(ours, mixup_target(labels, 10, 0.3, smoothing), atol=1e-6)
        assert torch.allclose(ours.sum(1), torch.ones(8), atol=1e-6)


def test_target_weight_of_label_a_is_the_mask_mean(gen: Generator) -> None:
    images, _ = _batch(12)
    labels = torch.arange(12)  # distinct labels: each target column belongs to one image
    mixup = SAMixUp(gen, 12, per_sample=True, rng=torch.Generator().manual_seed(3))
    seen_learned = 0
    for _ in range(4):
        mixed, targets = mixup(images, labels)
        params = mixup.last_params
        lam, partner = params.lam, params.partner
        with torch.no_grad():  # the drop-in's default read: a quarter of the native size
            read = encoder_size(gen.input_size, DEFAULT_GENERATOR_SCALE)
            mask = gen.masks(images, partner, lam, encoder_size=read)
        extreme = (lam <= LAM_MARGIN) | (lam >= 1 - LAM_MARGIN)
        mask = torch.where(extreme.view(-1, 1, 1, 1), lam.view(-1, 1, 1, 1).expand_as(mask), mask)
        seen_learned += int((~extreme).sum())
        assert torch.allclose(mixed, mask * images + (1 - mask) * images[partner], atol=1e-6)
        means = mask.flatten(1).mean(1)
        assert torch.allclose(means, lam, atol=1e-4)  # λ-exact generator
        assert torch.allclose(targets.sum(1), torch.ones(12), atol=1e-6)
        for i in range(12):
            j = int(partner[i])
            if j == i:  # paired with itself: unmixed, one label
                assert targets[i, i] == pytest.approx(1.0)
            else:
                assert float(targets[i, i]) == pytest.approx(float(means[i]), abs=1e-4)
                assert float(targets[i, j]) == pytest.approx(1 - float(means[i]), abs=1e-4)
    assert seen_learned > 10  # most samples used the learned mask, not the margin fallback


def test_label_smoothing_as_timm(gen: Generator) -> None:
    images, labels = _batch()
    a = SAMixUp(gen, 10, label_smoothing=0.1, rng=torch.Generator().manual_seed(1))
    _, targets = a(images, labels)
    lam, partner = a.last_params.lam, a.last_params.partner
    assert torch.allclose(targets, soft_targets(labels, 10, lam, partner, 0.1), atol=1e-6)
    assert float(targets.min()) >= 0.1 / 10 - 1e-6
    assert torch.allclose(targets.sum(1), torch.ones(8), atol=1e-6)


def test_normalised_input_gives_the_same_pixels(gen: Generator) -> None:
    images, labels = _batch()
    plain = SAMixUp(gen, 10, rng=torch.Generator().manual_seed(5))
    normed = SAMixUp(gen, 10, mean=MEAN, std=STD, rng=torch.Generator().manual_seed(5))
    for _ in range(3):
        px, pt = plain(images, labels)
        nx, nt = normed(_normalise(images), labels)
        back = nx * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
        assert (back - px).abs().max() <= 1e-5
        assert torch.equal(pt, nt)


def test_out_of_range_input_raises(gen: Generator) -> None:
    images, labels = _batch()
    mixup = SAMixUp(gen, 10)
    with pytest.raises(MixInputError, match=r"outside \[0, 1\].*pass mean= and std="):
        mixup(_normalise(images), labels)  # normalised input, no mean/std
    with pytest.raises(MixInputError, match="divide by 255"):
        mixup(images * 255, labels)
    with pytest.raises(MixInputError, match="dtype torch.uint8"):
        mixup((images * 255).to(torch.uint8), labels)
    with pytest.raises(MixInputError, match="after un-normalising"):  # wrong std for this data
        SAMixUp(gen, 10, mean=MEAN, std=(1.0, 1.0, 1.0))(_normalise(images), labels)
    with pytest.raises(MixInputError, match=r"outside \[0, 10\)"):
        mixup(images, labels + 5)
    with pytest.raises(MixInputError, match="integer class indices"):
        mixup(images, labels.float())
    with pytest.raises(ValueError, match="both mean and std"):  # MixInputError is a ValueError
        SAMixUp(gen, 10, mean=MEAN)
    mixup(images.clamp(0, 1) * (1 + 5e-3), labels)  # within the tolerance: accepted


def test_seeded_rng_is_deterministic_and_ignores_the_global_rng(gen: Generator) -> None:
    images, labels = _batch()
    torch.manual_seed(0)
    a = SAMixUp(gen, 10, rng=torch.Generator().manual_seed(11))(images, labels)
    torch.manual_seed(123)
    torch.rand(50)
    b = SAMixUp(gen, 10, rng=torch.Generator().manual_seed(11))(images, labels)
    c = SAMixUp(gen, 10, rng=torch.Generator().manual_seed(12))(images, labels)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_collate_fn_in_a_dataloader(gen: Generator) -> None:
    images, labels = _batch(16)
    data = list(zip(images, labels.tolist(), strict=True))
    mixup = SAMixUp(gen, 10, rng=torch.Generator().manual_seed(2))
    loader = torch.utils.data.DataLoader(data, batch_size=8, collate_fn=mixup.collate)
    batches = list(loader)
    ref = SAMixUp(gen, 10, rng=torch.Generator().manual_seed(2))
    for k, (x, t) in enumerate(batches):
        rx, rt = ref((images[8 * k : 8 * k + 8], labels[8 * k : 8 * k + 8]))  # the tuple form
        assert torch.equal(x, rx) and torch.equal(t, rt)
    # the instance itself is a collate_fn too (a list of samples), as torchvision's v2 examples
    same = SAMixUp(gen, 10, rng=torch.Generator().manual_seed(2))
    again = list(torch.utils.data.DataLoader(data, batch_size=8, collate_fn=same))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again, strict=True))


def test_datasets_batched_map(gen: Generator) -> None:
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    ds = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(p) for p in pixels], "label": [0, 1, 2, 3, 4, 5]},
        features=datasets.Features(
            {"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=6)}
        ),
    )
    mixup = SAMixUp(gen, 6, mean=MEAN, std=STD, rng=torch.Generator().manual_seed(4))
    out = ds.map(datasets_map_fn(mixup), batched=True, batch_size=3)
    assert out.features["image"] == datasets.Image()  # PIL images in, PIL images out
    assert "label" not in out.column_names  # renamed to label_a, as `samix-hub mix` writes
    targets = np.stack(out.with_format("numpy")["soft_label"])
    assert targets.shape == (6, 6) and np.allclose(targets.sum(1), 1, atol=1e-6)
    # PIL images are pixels: mixed in [0, 1] (as the pixel path), rounded to uint8
    ref = SAMixUp(gen, 6, rng=torch.Generator().manual_seed(4))
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    for k in range(2):
        rx, rt = ref(x[3 * k : 3 * k + 3], torch.arange(3 * k, 3 * k + 3))
        got = np.stack([np.asarray(im) for im in out["image"][3 * k : 3 * k + 3]])
        want = (rx.clamp(0, 1) * 255).round().permute(0, 2, 3, 1).numpy()
        assert np.abs(got.astype(np.float64) - want).max() <= 1
        assert np.allclose(targets[3 * k : 3 * k + 3], rt.numpy(), atol=1e-6)
    assert list(out["label_a"]) == [0, 1, 2, 3, 4, 5]
    # float images are taken as normalised when the mixup has mean/std, and returned so
    normed = ds.with_format("torch").map(
        lambda b: {"image": _normalise(b["image"].float() / 255)}, batched=True
    )
    mixup = SAMixUp(gen, 6, mean=MEAN, std=STD, rng=torch.Generator().manual_seed(4))
    again = normed.map(datasets_map_fn(mixup), batched=True, batch_size=3).with_format("numpy")
    back = np.stack(again["image"]) * np.array(STD).reshape(1, 3, 1, 1)
    back = back + np.array(MEAN).reshape(1, 3, 1, 1)
    pil = np.stack([np.asarray(im) for im in out["image"]]).transpose(0, 3, 1, 2) / 255
    assert np.abs(back - pil).max() <= 0.5 / 255 + 1e-5


def test_builtin_source_on_both_runtimes() -> None:
    """A source string loads the generator; torch and onnxruntime mix alike when both read at the
    native size (a graph cannot read smaller; torch's default read is a quarter)."""
    images, labels = _batch(6, size=32)
    torch_mix = SAMixUp(
        "builtin:cifar10-small", 10, rng=torch.Generator().manual_seed(9), generator_scale=1.0
    )
    onnx_gen = samix_hub.load_generator("builtin:cifar10-small", runtime="onnx", device="cpu")
    assert onnx_gen.metadata["calibration"] == "exact"  # the shipped graph describes itself
    onnx_mix = SAMixUp(onnx_gen, 10, rng=torch.Generator().manual_seed(9))
    (tx, tt), (ox, ot) = torch_mix(images, labels), onnx_mix(images, labels)
    assert (tx - ox).abs().max() < 1e-4 and torch.equal(tt, ot)
    lam = float(torch_mix.last_params.lam)
    assert "alpha=2" in repr(torch_mix) and 0 < lam < 1


def test_collate_in_worker_processes_draws_per_worker(gen: Generator) -> None:
    """Two workers with a copy of one seeded rng would repeat each other's λ; they do not."""
    images, _ = _batch(32)
    labels = torch.arange(32) % 8  # distinct within each batch: target max is max(λ, 1 - λ)
    data = list(zip(images, labels.tolist(), strict=True))
    mixup = SAMixUp(gen, 10, per_sample=True, rng=torch.Generator().manual_seed(2))

    def lams() -> list[torch.Tensor]:
        loader = torch.utils.data.DataLoader(
            data, batch_size=8, collate_fn=mixup.collate, num_workers=2,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        return [t.max(1).values for _, t in loader]

    first = lams()
    assert len(first) == 4 and not torch.equal(first[0], first[1])  # worker 0 vs worker 1
    assert all(torch.equal(a, b) for a, b in zip(first, lams(), strict=True))  # seeded
