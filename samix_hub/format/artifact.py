"""File names, kinds and format versions of every artifact samix-hub writes (docs/artifacts.md).

Constants only, and no imports: every other module names these files through this one.
"""

from __future__ import annotations

__all__ = [
    "GENERATOR",
    "BACKBONE",
    "MIXED_DATASET",
    "RUN",
    "MIXED_STATE_NAME",
    "CONFIG_NAME",
    "CARD_NAME",
    "GENERATOR_WEIGHTS",
    "BACKBONE_WEIGHTS",
    "GENERATOR_ONNX",
    "GENERATOR_ONNX_INT8",
    "BACKBONE_ONNX",
    "GENERATOR_FORMAT_VERSION",
    "BACKBONE_FORMAT_VERSION",
    "PICKLE_SUFFIXES",
    "ONNX_INPUTS",
    "LAM_CONVENTION",
    "LAM_CONVENTION_EXACT",
    "ONNX_MASK_CONVENTION",
    "ONNX_LAM_CONVENTION",
    "CALIBRATION_MODES",
]

#: Artifact kinds (a generator's ``config.json`` ``kind``; the other two are detected by files).
GENERATOR = "samix-generator"
BACKBONE = "samix-backbone"
MIXED_DATASET = "samix-mixed-dataset"
#: The ``kind`` of a training run's ``config.json``.
RUN = "samix-run"
#: The marker (and state file) of a ``mix`` output folder.
MIXED_STATE_NAME = ".samix-mix.json"

#: The config of a generator and of a backbone folder.
CONFIG_NAME = "config.json"
#: The model card of every kind.
CARD_NAME = "README.md"
GENERATOR_WEIGHTS = "generator.safetensors"
#: timm's Hub layout.
BACKBONE_WEIGHTS = "model.safetensors"
GENERATOR_ONNX = "onnx/generator.onnx"
GENERATOR_ONNX_INT8 = "onnx/generator.int8.onnx"
BACKBONE_ONNX = "onnx/model.onnx"

#: Version of a generator's ``config.json``.
GENERATOR_FORMAT_VERSION = 1
#: Version of the ``samix_hub`` section samix-hub adds to a timm backbone ``config.json``.
BACKBONE_FORMAT_VERSION = 1

#: Files that would need unpickling: never loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt", ".pickle")
#: Input names of the ONNX graphs samix-hub writes.
ONNX_INPUTS = {GENERATOR: ("images", "partner", "lam"), BACKBONE: ("images",)}

#: ``lam_convention`` of a generator config (free mask mean, and λ-exact calibration).
LAM_CONVENTION = "mask is the weight of each image; partner[i] gets 1 - mask; mean(mask) ~= lam"
LAM_CONVENTION_EXACT = (
    "mask is the weight of each image; partner[i] gets 1 - mask; mean(mask[i]) == lam[i] exactly "
    "(λ-exact calibration)"
)
#: The generator graph's ``samix_hub.mask_convention`` and ``samix_hub.lam_convention`` ONNX
#: metadata (docs/artifacts.md), as the card states them.
ONNX_MASK_CONVENTION = (
    "mask[i] is the per-pixel weight of images[i] in [0, 1]; images[partner[i]] gets 1 - mask[i]; "
    "partner[i] indexes this batch (0 <= partner[i] < N); "
    "mixed = mask * images + (1 - mask) * images[partner]"
)
ONNX_LAM_CONVENTION = (
    "lam[i] in [0, 1] is the share of images[i]; soft label = lam[i] * y[i] + (1 - lam[i]) * "
    "y[partner[i]], always with the sampled lam"
)

#: A mixer config's ``calibration``: "none" (the reference's free mask mean) or "exact"
#: (λ-exact masks, docs/algorithm.md "Deviations").
CALIBRATION_MODES = ("none", "exact")
