"""Fine-tuning: hard-label cross-entropy on the response tokens (the baseline and the teacher)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from first_pl.modules.base import StudentModule


class FineTune(StudentModule):
    """Cross-entropy against the gold response tokens; the paper's Fine-tune row and teacher."""

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, batch: dict[str, Any], mask: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), targets)
