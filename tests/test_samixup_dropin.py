"""``SAMixUp`` as a drop-in for timm's ``Mixup`` and torchvision's v2 ``MixUp`` / ``CutMix``.

The conventions of torchvision's own MixUp/CutMix tests (input structures, soft-target rows,
loud errors) and timm's keywords (``prob``, ``switch_prob``, ``mode``, ``mixup_enabled``,
``label_smoothing``), checked with the shipped ``builtin:cifar10-small`` generator. References
are independent of our code: torchvision's own ``MixUp`` / ``CutMix`` transforms fed the λ and
box we drew, timm's ``mixup_target``, and masks solved back from the mixed pixels.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from timm.data.mixup import mixup_target
from torch.utils.data import DataLoader, default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2

import samix_hub
from samix_hub import SAMixUp
from samix_hub.mixing import LAM_MARGIN
from samix_hub.mixing.samixup import MixInputError, datasets_map_fn

NUM_CLASSES = 100
SIZE = 32


@pytest.fixture(scope="module")
def gen() -> Any:
    """The shipped λ-exact generator (torch runtime)."""
    return samix_hub.load_generator("builtin:cifar10-small")


def _batch(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] and distinct labels (no two images of one class)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, SIZE, SIZE, generator=g), torch.randperm(NUM_CLASSES, generator=g)[:n]


def _check_targets(targets: torch.Tensor, labels: torch.Tensor) -> None:
    """torchvision's check: N x C, rows summing to 1, exactly two non-zero labels (distinct
    labels in the batch), the image's own label among them."""
    n = labels.shape[0]
    assert targets.shape == (n, NUM_CLASSES) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(1), torch.ones(n))
    assert ((targets != 0).sum(1) == 2).all()
    assert (targets[torch.arange(n), labels] > 0).all()


# ------------------------------------------------------------------ input structures
class _Samples(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.images, self.labels = _batch(n)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


def test_supported_input_structures(gen: Any) -> None:
    n = 16
    data = _Samples(n)
    mixup = SAMixUp(gen, NUM_CLASSES, seed=0)
    loader = DataLoader(data, batch_size=n)

    images, labels = next(iter(loader))  # unpacked, after the DataLoader
    out = mixup(images, labels)
    assert isinstance(out, tuple) and out[0].shape == images.shape
    _check_targets(out[1], labels)

    packed = next(iter(loader))  # packed: the DataLoader gives a list
    assert isinstance(packed, list)
    out_list = mixup(packed)
    assert isinstance(out_list, list) and len(out_list) == 2
    _check_targets(out_list[1], labels)
    _check_targets(mixup((images, labels))[1], labels)  # a tuple

    def collate_packed(batch: list[Any]) -> Any:
        return mixup(default_collate(batch))

    def collate_unpacked(batch: list[Any]) -> Any:
        return mixup(*default_collate(batch))

    for collate in (collate_packed, collate_unpacked, mixup.collate, mixup):
        x, t = next(iter(DataLoader(data, batch_size=n, collate_fn=collate)))
        assert x.shape == images.shape
        _check_targets(t, labels)

    # dicts: torchvision's default getter finds "labels", else a key containing "label"
    for key in ("labels", "Labels", "class_label"):
        out_d = mixup({"image": images, key: labels, "ids": list(range(n))})
        assert set(out_d) == {"image", key, "ids"} and out_d["ids"] == list(range(n))
        assert out_d["image"].shape == images.shape
        _check_targets(out_d[key], labels)
    ordered = mixup(OrderedDict(pixel_values=images, labels=labels))
    assert isinstance(ordered, OrderedDict) and list(ordered) == ["pixel_values", "labels"]
    nested = mixup((images, {"labels": labels, "names": "x"}))  # a tuple holding a dict
    assert nested[1]["names"] == "x"
    _check_targets(nested[1]["labels"], labels)
    ids = torch.arange(n)
    for extra in (mixup(images, labels, ids), mixup((images, labels, ids))):  # as torchvision
        assert len(extra) == 3 and extra[2] is ids
        _check_targets(extra[1], labels)
    custom = SAMixUp(gen, NUM_CLASSES, seed=0, labels_getter=lambda inputs: inputs["y"])
    _check_targets(custom({"x": images, "y": labels})["y"], labels)


def test_dict_samples_collate_to_a_dict(gen: Any) -> None:
    images, labels = _batch(6)
    samples = [{"image": images[i], "label": int(labels[i])} for i in range(6)]
    out = SAMixUp(gen, NUM_CLASSES, seed=1)(samples)
    assert set(out) == {"image", "label"} and out["image"].shape == images.shape
    _check_targets(out["label"], labels)


def test_tv_tensors_image_stays_an_image(gen: Any) -> None:
    images, labels = _batch()
    out, targets = SAMixUp(gen, NUM_CLASSES, seed=0)(tv_tensors.Image(images), labels)
    assert isinstance(out, tv_tensors.Image) and out.shape == images.shape
    _check_targets(targets, labels)


def test_probability_labels_as_torchvision(gen: Any) -> None:
    """N x num_classes class probabilities mix like the indices they encode."""
    images, labels = _batch()
    one_hot = torch.nn.functional.one_hot(labels, NUM_CLASSES).float()
    a = SAMixUp(gen, NUM_CLASSES, label_smoothing=0.1, seed=3)(images, labels)
    b = SAMixUp(gen, NUM_CLASSES, label_smoothing=0.1, seed=3)(images, one_hot)
    assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1], atol=1e-6)


def test_same_class_partner_gives_one_label(gen: Any) -> None:
    images, _ = _batch(8)
    labels = torch.tensor([3, 3, 3, 3, 5, 5, 5, 5])
    _, targets = SAMixUp(gen, NUM_CLASSES, seed=0)(images, labels)
    torch.testing.assert_close(targets.sum(1), torch.ones(8))
    nonzero = (targets != 0).sum(1)
    assert nonzero.tolist() == [2, 1, 1, 1, 2, 1, 1, 1]  # rows 0 and 4 meet the other class


# ------------------------------------------------------------------ loud errors
BAD_CALLS: list[tuple[str, Any, str]] = [
    ("string labels", lambda x, y: (x, ["cat"] * 8), r"labels=\['cat'"),
    ("numpy string labels", lambda x, y: (x, np.array(["a"] * 8)), r"labels=array\("),
    ("labels out of range", lambda x, y: (x, y + NUM_CLASSES), r"outside \[0, 100\)"),
    ("negative labels", lambda x, y: (x, y - 200), r"labels span \[-"),
    ("float labels", lambda x, y: (x, y.float()), r"integer class indices.*float32 \(8,\)"),
    ("bool labels", lambda x, y: (x, y > 50), r"torch.bool \(8,\)"),
    ("labels of the wrong length", lambda x, y: (x, y[:5]), r"int64 \(5,\)"),
    ("3-D labels", lambda x, y: (x, torch.zeros(8, 2, 2, dtype=torch.long)), r"\(8, 2, 2\)"),
    ("2-D labels of the wrong width", lambda x, y: (x, torch.ones(8, 3) / 3), r"\(8, 3\)"),
    ("probabilities not summing to 1", lambda x, y: (x, torch.ones(8, 100)), "row 0 sums to 100"),
    ("3-D images", lambda x, y: (x[0], y), r"N x C x H x W tensor, got \(3, 32, 32\)"),
    ("5-D images", lambda x, y: (x[None], y), r"got \(1, 8, 3, 32, 32\)"),
    ("a PIL image", lambda x, y: (Image.new("RGB", (32, 32)), y), "got <class 'PIL.Image.Image'>"),
    ("uint8 images", lambda x, y: ((x * 255).byte(), y), "dtype torch.uint8"),
    ("0-255 floats", lambda x, y: (x * 255, y), "divide by 255"),
    ("normalised images", lambda x, y: ((x - 0.5) / 0.25, y), "pass mean= and std="),
    ("NaN images", lambda x, y: (x.masked_fill(x > 0.99, float("nan")), y), "NaN"),
    ("RGBA images", lambda x, y: (torch.cat([x, x[:, :1]], 1), y), r"4 channels \(RGBA\?\)"),
    ("2-channel images", lambda x, y: (x[:, :2], y), "2 channels"),
    ("an empty batch", lambda x, y: (x[:0], y[:0]), "empty batch"),
]


@pytest.mark.parametrize("case", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_one_line(gen: Any, case: tuple[str, Any, str]) -> None:
    _, make, pattern = case
    images, labels = _batch()
    mixup = SAMixUp(gen, NUM_CLASSES, seed=0)
    with pytest.raises(ValueError, match=pattern) as info:
        mixup(*make(images, labels))
    assert isinstance(info.value, MixInputError) and "\n" not in str(info.value)


BAD_STRUCTURES: list[tuple[str, Any, str]] = [
    ("images alone", lambda x, y: (x,), "got a Tensor: call mixup"),
    ("no label key", lambda x, y: ({"img": x, "nothing": 3},), r"no labels among the keys"),
    ("no image in the dict", lambda x, y: ({"labels": y, "a": 1},), "found 0"),
    ("two image tensors", lambda x, y: ({"a": x, "b": x.clone(), "labels": y},), "found 2"),
    ("no arguments", lambda x, y: (), "got no arguments"),
    ("a one-item tuple", lambda x, y: ((x,),), "a tuple of 1 items"),
]


@pytest.mark.parametrize("case", BAD_STRUCTURES, ids=[c[0] for c in BAD_STRUCTURES])
def test_bad_structure_raises_one_line(gen: Any, case: tuple[str, Any, str]) -> None:
    _, make, pattern = case
    images, labels = _batch()
    with pytest.raises(MixInputError, match=pattern) as info:
        SAMixUp(gen, NUM_CLASSES, seed=0)(*make(images, labels))
    assert "\n" not in str(info.value)


BAD_SETTINGS: list[tuple[dict[str, Any], str]] = [
    ({"prob": 1.5}, r"prob=1.5: need a probability"),
    ({"prob": -0.1}, r"prob=-0.1"),
    ({"prob": "0.5"}, r"prob='0.5'"),
    ({"prob": float("nan")}, r"prob=nan"),
    ({"switch_prob": 2}, r"switch_prob=2"),
    ({"switch_prob": True}, r"switch_prob=True"),
    ({"mixup_alpha": -1.0}, r"mixup_alpha=-1.0"),
    ({"cutmix_alpha": float("inf")}, r"cutmix_alpha=inf"),
    ({"switch_prob": 0.5, "mixup_alpha": 0.0}, r"switch_prob=0.5 needs mixup_alpha > 0"),
    ({"alpha": 0.0}, r"alpha must be a positive finite number, got 0.0"),
    ({"mode": "pairs"}, r"mode='pairs': need one of batch, pair, elem"),
    ({"label_smoothing": 1.0}, r"label_smoothing=1.0"),
    ({"num_classes": 0}, r"num_classes=0"),
    ({"num_classes": 2.5}, r"num_classes=2.5"),
    ({"mixup_enabled": "yes"}, r"mixup_enabled='yes'"),
    ({"per_sample": True, "mode": "pair"}, r"per_sample=True is mode='elem'; got mode='pair'"),
    ({"labels_getter": "first"}, r"labels_getter='first'"),
    ({"seed": 1, "rng": torch.Generator()}, "rng= or seed=, not both"),
    ({"seed": "1"}, r"seed='1'"),
    ({"mask_adjust": 2.0}, r"mask_adjust is a probability in \[0, 1\], got 2.0"),
    ({"margin": 0.5}, r"margin=0.5"),
    ({"tolerance": -1}, r"tolerance=-1"),
]


@pytest.mark.parametrize("kwargs, pattern", BAD_SETTINGS, ids=[str(k) for k, _ in BAD_SETTINGS])
def test_bad_settings_raise_one_line(gen: Any, kwargs: dict[str, Any], pattern: str) -> None:
    kwargs = {"num_classes": NUM_CLASSES, **kwargs}
    with pytest.raises(MixInputError, match=pattern) as info:
        SAMixUp(gen, **kwargs)
    assert "\n" not in str(info.value)


def test_pair_mode_needs_an_even_batch(gen: Any) -> None:
    images, labels = _batch(7)
    with pytest.raises(MixInputError, match="mode='pair' needs an even batch size, got 7"):
        SAMixUp(gen, NUM_CLASSES, mode="pair", seed=0)(images, labels)


# ------------------------------------------------------------------ determinism
def test_seed_and_generator_are_deterministic_and_leave_the_global_rng(gen: Any) -> None:
    images, labels = _batch()
    kwargs: dict[str, Any] = {"mode": "elem", "switch_prob": 0.5, "cutmix_alpha": 1.0}
    state = torch.random.get_rng_state()
    by_seed = SAMixUp(gen, NUM_CLASSES, seed=11, **kwargs)
    by_rng = SAMixUp(gen, NUM_CLASSES, rng=torch.Generator().manual_seed(11), **kwargs)
    other = SAMixUp(gen, NUM_CLASSES, seed=12, **kwargs)
    for _ in range(3):
        a, b, c = by_seed(images, labels), by_rng(images, labels), other(images, labels)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[1], c[1])
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched


# ------------------------------------------------------------------ modes and pairs
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_nobody_is_paired_with_itself(gen: Any, mode: str) -> None:
    for n in (2, 3, 8) if mode != "pair" else (2, 8):
        images, labels = _batch(n)
        mixup = SAMixUp(gen, NUM_CLASSES, mode=mode, seed=n)
        _, targets = mixup(images, labels)
        _check_targets(targets, labels)  # two labels per row: never paired with itself
        assert mixup.last_params is not None
        assert (mixup.last_params.partner != torch.arange(n)).all()


def test_batch_of_one_is_returned_unmixed(gen: Any) -> None:
    images, labels = _batch(1)
    out, targets = SAMixUp(gen, NUM_CLASSES, seed=0)(images, labels)
    assert torch.equal(out, images)
    assert torch.equal(targets, torch.nn.functional.one_hot(labels, NUM_CLASSES).float())


def _lam_of(targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The weight of each image's own label (distinct labels, no smoothing)."""
    return targets[torch.arange(labels.shape[0]), labels]


def test_mode_semantics(gen: Any) -> None:
    """As timm: one λ per batch, per pair (i, N - 1 - i) or per element."""
    images, labels = _batch(8)
    for _ in range(3):
        lam = _lam_of(SAMixUp(gen, NUM_CLASSES, mode="batch", seed=_)(images, labels)[1], labels)
        assert torch.all(lam == lam[0])
    elem = SAMixUp(gen, NUM_CLASSES, mode="elem", seed=0)
    lam = _lam_of(elem(images, labels)[1], labels)
    assert len(set(lam.tolist())) == 8  # a different λ for every image
    pair = SAMixUp(gen, NUM_CLASSES, mode="pair", seed=0)
    _, targets = pair(images, labels)
    lam = _lam_of(targets, labels)
    assert torch.equal(lam, lam.flip(0)) and len(set(lam.tolist())) == 4
    flip = labels.flip(0)  # image i and image N - 1 - i are each other's partner
    assert torch.allclose(targets[torch.arange(8), flip], 1 - lam, atol=1e-6)


def test_per_sample_is_elem_mode(gen: Any) -> None:
    images, labels = _batch()
    a = SAMixUp(gen, NUM_CLASSES, per_sample=True, seed=4)
    b = SAMixUp(gen, NUM_CLASSES, mode="elem", seed=4)
    assert a.mode == "elem"
    assert all(torch.equal(u, v) for u, v in zip(a(images, labels), b(images, labels), strict=True))


# ------------------------------------------------------------------ prob, mixup_enabled
def test_prob_zero_leaves_images_untouched(gen: Any) -> None:
    images, labels = _batch()
    for mode in ("batch", "pair", "elem"):
        mixup = SAMixUp(gen, NUM_CLASSES, prob=0.0, mode=mode, label_smoothing=0.1, seed=0)
        out, targets = mixup(images, labels)
        assert torch.equal(out, images)
        assert torch.allclose(targets, mixup_target(labels, NUM_CLASSES, 1.0, 0.1), atol=1e-6)


def test_prob_per_element_mixes_some_rows_only(gen: Any) -> None:
    images, labels = _batch(16)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    normed = (images - 0.5) / 0.25
    mixup = SAMixUp(gen, NUM_CLASSES, prob=0.5, mode="elem", mean=mean, std=std, seed=2)
    out, targets = mixup(normed, labels)
    same = (out == normed).flatten(1).all(1)
    assert 0 < int(same.sum()) < 16  # some rows untouched (bit for bit), some mixed
    one_label = (targets != 0).sum(1) == 1
    assert torch.equal(same, one_label)  # untouched rows have their own label only


def test_mixup_enabled_false_gives_soft_targets_and_no_mixing(gen: Any) -> None:
    images, labels = _batch()
    mixup = SAMixUp(gen, NUM_CLASSES, label_smoothing=0.1, mixup_enabled=False, seed=0)
    out, targets = mixup(images, labels)
    assert torch.equal(out, images)
    assert torch.allclose(targets, mixup_target(labels, NUM_CLASSES, 1.0, 0.1), atol=1e-6)
    odd = SAMixUp(gen, NUM_CLASSES, mode="pair", mixup_enabled=False)  # nothing to pair
    assert torch.equal(odd(images[:7], labels[:7])[0], images[:7])
    mixup.mixup_enabled = True  # timm's train loops flip the attribute
    out, targets = mixup(images, labels)
    assert not torch.equal(out, images)
    assert ((targets > 0.1 / NUM_CLASSES + 1e-6).sum(1) == 2).all()


# ------------------------------------------------------------------ classic fallbacks
def test_switch_prob_one_is_torchvision_mixup(gen: Any) -> None:
    """switch_prob=1 and classic MixUp: torchvision's MixUp fed our λ gives the same batch."""
    images, labels = _batch()
    mixup = SAMixUp(gen, NUM_CLASSES, switch_prob=1.0, mixup_alpha=0.4, seed=5)
    reference = v2.MixUp(alpha=0.4, num_classes=NUM_CLASSES)
    for _ in range(3):
        out, targets = mixup(images, labels)
        assert mixup.last_params is not None and mixup.last_params.kinds == ["mixup"] * 8
        lam = float(_lam_of(targets, labels)[0])
        params = {"lam": lam, "labels": labels, "batch_size": 8}
        assert torch.allclose(out, reference.transform(images, params), atol=1e-6)
        assert torch.allclose(targets, reference.transform(labels, params), atol=1e-6)


def test_switch_prob_one_is_torchvision_cutmix(gen: Any) -> None:
    """switch_prob=1 and classic CutMix: one box per batch taken from the previous image,
    λ = the area kept; torchvision's CutMix fed that box gives the same batch."""
    images, labels = _batch()
    mixup = SAMixUp(gen, NUM_CLASSES, switch_prob=1.0, mixup_alpha=0, cutmix_alpha=1.0, seed=6)
    reference = v2.CutMix(alpha=1.0, num_classes=NUM_CLASSES)
    for _ in range(4):
        out, targets = mixup(images, labels)
        changed = (out != images).any(1).any(0)  # H x W: where any image changed
        ys, xs = changed.nonzero(as_tuple=True)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        assert changed[y0:y1, x0:x1].all()  # the changes form one rectangle
        lam = _lam_of(targets, labels)
        assert torch.allclose(lam, torch.full((8,), 1 - (y1 - y0) * (x1 - x0) / SIZE**2))
        params = {"box": (x0, y0, x1, y1), "lam_adjusted": float(lam[0]), "labels": labels,
                  "batch_size": 8}  # fmt: skip
        assert torch.equal(out, reference.transform(images, params))
        assert torch.allclose(targets, reference.transform(labels, params), atol=1e-6)


def test_switch_in_pair_mode_is_timm_pair_mixup(gen: Any) -> None:
    """timm's pair mode: image i and N - 1 - i share λ and mix with each other."""
    images, labels = _batch()
    mixup = SAMixUp(gen, NUM_CLASSES, mode="pair", switch_prob=1.0, seed=7)
    out, targets = mixup(images, labels)
    lam = _lam_of(targets, labels).view(-1, 1, 1, 1)
    assert torch.allclose(out, lam * images + (1 - lam) * images.flip(0), atol=1e-6)


def test_switch_prob_mixes_methods_per_element(gen: Any) -> None:
    images, labels = _batch(16)
    mixup = SAMixUp(gen, NUM_CLASSES, mode="elem", switch_prob=0.6, cutmix_alpha=1.0, seed=8)
    seen: set[str] = set()
    for _ in range(3):
        _, targets = mixup(images, labels)
        _check_targets(targets, labels)
        assert mixup.last_params is not None
        seen |= set(mixup.last_params.kinds)
    assert seen == {"samix", "mixup", "cutmix"}


# ------------------------------------------------------------------ the learned path
def test_learned_mask_mean_is_lam(gen: Any) -> None:
    """The mask, solved back from the mixed pixels, has mean λ (the target weight): pairs are
    made of a dark and a light image, so every pixel pins the mask down."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, SIZE, SIZE, generator=g) * 0.4
    images[1::2] += 0.6  # neighbours (the pairs of `roll`) differ by >= 0.2 everywhere
    labels = torch.arange(8)
    mixup = SAMixUp(gen, NUM_CLASSES, mode="elem", seed=1)
    learned = 0
    for _ in range(3):
        out, targets = mixup(images, labels)
        partner = images.roll(1, 0)
        mask = ((out - partner) / (images - partner)).mean(1)  # N x H x W
        assert mask.min() >= -1e-4 and mask.max() <= 1 + 1e-4
        assert (mask.std(0) > 1e-6).any()  # not a constant
        lam = _lam_of(targets, labels)
        assert torch.allclose(mask.flatten(1).mean(1), lam, atol=2e-3)
        learned += int(((lam > LAM_MARGIN) & (lam < 1 - LAM_MARGIN)).sum())
        spatial = mask.flatten(1).std(1)
        assert (spatial[(lam > LAM_MARGIN) & (lam < 1 - LAM_MARGIN)] > 0.01).all()
    assert learned >= 12


def test_grayscale_uses_the_rgb_mask_and_stays_gray(gen: Any) -> None:
    images, labels = _batch()
    gray = images.mean(1, keepdim=True)
    out_gray, t_gray = SAMixUp(gen, NUM_CLASSES, seed=3)(gray, labels)
    out_rgb, t_rgb = SAMixUp(gen, NUM_CLASSES, seed=3)(gray.expand(-1, 3, -1, -1), labels)
    assert out_gray.shape == gray.shape
    assert torch.allclose(out_gray, out_rgb[:, :1], atol=1e-6) and torch.equal(t_gray, t_rgb)


# ------------------------------------------------------------------ datasets
def _hf(n: int, mode: str = "RGB", seed: int = 0) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, (n, SIZE, SIZE, channels), dtype=np.uint8)
    images = [Image.fromarray(p[..., 0] if channels == 1 else p, mode) for p in pixels]
    return datasets.Dataset.from_dict(
        {"image": images, "label": [i % 10 for i in range(n)]},
        features=datasets.Features(
            {"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)}
        ),
    )


def test_datasets_map_schema_and_last_batch_of_one(gen: Any) -> None:
    ds = _hf(7)
    mixup = SAMixUp(gen, 10, seed=4)
    out = ds.map(datasets_map_fn(mixup), batched=True, batch_size=3)  # batches 3, 3, 1
    assert out.column_names == ["image", "label_a", "label_b", "lam", "soft_label"]
    assert out.features["image"] == datasets.Image()
    assert all(isinstance(im, Image.Image) and im.mode == "RGB" for im in out["image"])
    label_a, label_b = np.array(out["label_a"]), np.array(out["label_b"])
    lam, soft = np.array(out["lam"]), np.array(out["soft_label"])
    assert label_a.tolist() == list(range(7))
    assert (label_b != label_a).all()  # every row mixed with another image, the last one too
    want = np.zeros((7, 10))
    want[np.arange(7), label_a] += lam
    want[np.arange(7), label_b] += 1 - lam
    assert np.allclose(soft, want, atol=1e-6) and np.allclose(soft.sum(1), 1, atol=1e-6)
    assert label_b[6] == 5  # the last image's partner is the previous batch's last image
    # the same draws by hand: batches of 3, 3, then the last image with image 5 as its partner
    ref = SAMixUp(gen, 10, seed=4)
    x = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in ds["image"]])
    x = x.float() / 255
    y = torch.tensor(label_a)
    want_x = torch.cat([ref(x[0:3], y[0:3])[0], ref(x[3:6], y[3:6])[0]])
    last_x, last_t = ref(x[[6, 5]], y[[6, 5]])
    want_x = torch.cat([want_x, last_x[:1]])
    got = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in out["image"]])
    assert (got.float() / 255 - want_x).abs().max() <= 0.5 / 255 + 1e-6
    assert np.allclose(soft[6], last_t[0].numpy(), atol=1e-6)
    assert not torch.allclose(want_x[6], x[6], atol=2 / 255)  # really mixed


def test_datasets_map_formatted_with_remove_columns(gen: Any) -> None:
    ds = _hf(6).with_format("numpy")
    out = ds.map(datasets_map_fn(SAMixUp(gen, 10, seed=1)), batched=True, batch_size=3,
                 remove_columns=["label"])  # fmt: skip
    assert out.column_names == ["image", "label_a", "label_b", "lam", "soft_label"]
    assert out.features["image"] == datasets.Image()


@pytest.mark.parametrize("mode, out_mode", [("L", "L"), ("RGBA", "RGB")])
def test_datasets_map_grayscale_and_rgba(gen: Any, mode: str, out_mode: str) -> None:
    out = _hf(4, mode).map(datasets_map_fn(SAMixUp(gen, 10, seed=2)), batched=True, batch_size=4)
    assert {im.mode for im in out["image"]} == {out_mode}
    assert np.allclose(np.array(out["soft_label"]).sum(1), 1, atol=1e-6)


def test_datasets_map_refuses_unbatched_and_single_row(gen: Any) -> None:
    fn = datasets_map_fn(SAMixUp(gen, 10, seed=0))
    with pytest.raises(MixInputError, match=r"batched=True\) \(got one example, label=0\)"):
        _hf(4).map(fn)
    with pytest.raises(MixInputError, match="a batch of one image and no earlier batch"):
        _hf(1).map(datasets_map_fn(SAMixUp(gen, 10, seed=0)), batched=True)
