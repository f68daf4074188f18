"""A tiny module and data module that speak the EvalOutput contract with no model at all."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset


class SyntheticTask(Dataset):
    """Examples with fixed candidate probabilities; `n_options` candidates out of 4 columns."""

    def __init__(self, name: str, n: int, n_options: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.name = name
        self.mask = torch.arange(4)[None, :] < n_options
        self.mask = self.mask.expand(n, 4)
        self.probs = torch.rand(n, 4, generator=g).softmax(-1) * 0.95 * self.mask
        pred = self.probs.masked_fill(~self.mask, -1).argmax(-1)
        random_gold = torch.randint(n_options, (n,), generator=g)
        self.gold = torch.where(torch.rand(n, generator=g) < 0.6, pred, random_gold)

    def __len__(self) -> int:
        return len(self.gold)

    def __getitem__(self, i: int) -> dict:
        return {
            "candidate_probs": self.probs[i],
            "candidate_mask": self.mask[i],
            "gold": self.gold[i],
            "example_id": f"{self.name}-{i}",
        }


class SyntheticDataModule(pl.LightningDataModule):
    def __init__(self, sizes: dict[str, int], letters: object = "ABCD") -> None:
        super().__init__()
        self.tasks = [
            SyntheticTask(name, n, 3 + i % 2, i) for i, (name, n) in enumerate(sizes.items())
        ]
        self.candidate_letters = letters

    @property
    def eval_task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.tasks[0], batch_size=16)

    def val_dataloader(self) -> list[DataLoader]:
        return [DataLoader(t, batch_size=16) for t in self.tasks]

    def test_dataloader(self) -> list[DataLoader]:
        return self.val_dataloader()


class SyntheticModule(pl.LightningModule):
    """Returns the EvalOutput of its batch's stored probabilities; one parameter so fit runs."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return (self.weight - 1).square()

    def evaluate(self, batch: dict) -> dict:
        probs, mask = batch["candidate_probs"], batch["candidate_mask"]
        pred = probs.masked_fill(~mask, -1).argmax(-1)
        return {
            "candidate_probs": probs,
            "candidate_mask": mask,
            "gold": batch["gold"],
            "pred": pred,
            "confidence": probs.gather(1, pred[:, None])[:, 0],
            "correct": pred == batch["gold"],
            "example_id": batch["example_id"],
        }

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        return self.evaluate(batch)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        return self.evaluate(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)
