"""Fine-tuning: hard-label cross-entropy on the response tokens (the baseline and the teacher)."""

from __future__ import annotations

import torch

from first_pl.data.batch import TrainBatch
from first_pl.methods.base import MethodModule
from first_pl.methods.losses import hard_label_ce


class FineTune(MethodModule):
    """Cross-entropy against the gold response tokens; the paper's Fine-tune row and teacher."""

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, batch: TrainBatch, mask: torch.Tensor) -> torch.Tensor:
        # A batch with no response position gives 0 (not NaN), so a rank can still step.
        return hard_label_ce(logits, targets)
