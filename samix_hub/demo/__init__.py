"""``samix-hub demo``: the whole SAMix^P pipeline offline, on CPU, on real bundled data.

The demo only composes the library's public functions (what the commands run); it implements
none of the steps itself:

1. data: scikit-learn's bundled ``digits`` (real scans, no download) split by class into a
   *source* task (digits 0-4) and a *target* task (digits 5-9), written as two ``npz:`` specs;
2. train: a plain (vanilla) classifier on the source task, :func:`samix_hub.train.train`. It is
   the teacher of step 3 and the backbone that gets published and fine-tuned;
3. generator: a SAMix mixer trained ALONE against that frozen classifier (the teacher recipe,
   docs/algorithm.md "Teacher-trained generators": ``TrainConfig(scenario="teacher")``, as
   ``samix-hub train --method samix --teacher RUN_DIR``), AdamW, λ-exact masks;
4. export: generator and backbone folders, safetensors + ONNX + card, with torch vs onnxruntime
   parity checks, :func:`samix_hub.export.generator.export_run`;
5. publish: each folder becomes a repo ``samix-demo/...`` in a local Hugging Face Hub cache
   (:func:`publish_local`, see there why not a Hub server);
6. pull: :func:`samix_hub.hub.resolve.resolve_source` fetches the repos back by id, offline, through
   ``huggingface_hub`` (commit resolution, checksums, artifact validation: what users get);
7. mix: the pulled generator on onnxruntime writes a mixed data set of the target task and a
   preview grid, :func:`samix_hub.export.mixed_writer.write_mixed`; the pulled generator's mask
   statistics on target test images, :func:`samix_hub.mixing.statistics.generator_mask_statistics`;
8. fine-tune: the backbone's architecture, from random weights (a regime where mixing pays
   off, chosen on a validation split; ``DemoConfig.finetune_pretrained``), on the target task
   with the frozen pulled generator (SAMix^P, docs/algorithm.md), MixUp, CutMix and plain
   training, same budget,
   :func:`samix_hub.train.finetune.finetune_config` + :func:`samix_hub.train.train`.

The summary (paths, timings, accuracies, mask statistics, ONNX vs torch parity) is returned and
written to ``OUT/summary.json``.

Deviations from the paper's recipe, forced by a budget of minutes on CPU: 16 px digits and a
narrow ResNet-18; the generator is trained against a frozen classifier for a few hundred steps
instead of online for ~10^5 (an online EMA classifier is near-random that early,
docs/algorithm.md); the fine-tunes also run MixUp and CutMix as baselines.
"""

from samix_hub.demo.config import BACKBONE_REPO, FAST, FULL, GENERATOR_REPO, MARKER, DemoConfig
from samix_hub.demo.publish import publish_local
from samix_hub.demo.run import run_demo

__all__ = [
    "DemoConfig",
    "FULL",
    "FAST",
    "GENERATOR_REPO",
    "BACKBONE_REPO",
    "MARKER",
    "publish_local",
    "run_demo",
]
