"""Training and evaluation: the multi-side BCE loss, datasets, the trainer and SOD metrics.

Layout:

* `loss`: the seven-term BCE fusion loss from logits (and the upstream formula, for tests);
* `data`: DUTS-style folder pairing and the upstream augmentation (numpy only);
* `synth`: a small synthetic dataset for tests and demos (numpy + OpenCV);
* `config`, `trainer`, `distributed`, `state`, `runlog`: the training run (torch);
* `metrics`, `evaluate`: PySODMetrics plus the relaxed boundary F-measure, and evaluating any
  `Runtime` artifact on a dataset.

Names are re-exported lazily so that `import u2deploy.train` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["TrainConfig", "Trainer", "TrainResult", "train", "multi_bce_loss", "SODDataset", "load_pairs",
           "SODMetrics", "relaxed_boundary_fmeasure", "evaluate_dataset", "EvalResult"]  # fmt: skip

_EXPORTS = {
    "TrainConfig": "config", "Trainer": "trainer", "TrainResult": "trainer", "train": "trainer",
    "multi_bce_loss": "loss", "SODDataset": "data", "load_pairs": "data", "SODMetrics": "metrics",
    "relaxed_boundary_fmeasure": "metrics", "evaluate_dataset": "evaluate", "EvalResult": "evaluate",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module '{__name__}' has no attribute '{name}'")
