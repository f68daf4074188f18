"""`MethodModule`: what every method shares, for the teacher's fine-tuning and the students alike.

A method differs from another only in `loss` (and, for the distillation methods, the
teacher transform inside it). Everything else lives here once: building the model in
`configure_model` (so Lightning's sharded strategies never materialise it whole on one rank),
logits only at response positions, the optimiser and its schedule; the scoring of
multiple-choice options is `first_pl.methods.multiple_choice`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import PurePath
from typing import Any

import lightning as L
import torch
from torch.optim.lr_scheduler import LambdaLR

from first_pl.data.batch import EvalBatch, EvalOutput, TrainBatch, response_mask
from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.record import DATA_KEY, data_record
from first_pl.methods.compatibility import check_checkpoint_model, check_vocabulary
from first_pl.methods.multiple_choice import MultipleChoiceScoring
from first_pl.methods.sharding import LOGITS_AT, install_logits_at, shard_model
from first_pl.models import ModelSpec, build_model

# The checkpoint entry naming the method class that saved it (`on_save_checkpoint`), read back
# by `methods.checkpoint` and `methods.recorded_config` to rebuild the module without a config.
METHOD_KEY = "first_pl_method"
# The same entry under the name checkpoints saved by earlier first_pl versions use: they still load.
OLD_METHOD_KEYS = ("first_pl_strategy",)


def recorded_method(checkpoint: Mapping[str, Any]) -> str | None:
    """The class path of the method that saved `checkpoint`; None if no first_pl method did."""
    for key in (METHOD_KEY, *OLD_METHOD_KEYS):
        if key in checkpoint:
            return checkpoint[key]
    return None


class DivergedError(ValueError):
    """Training reached a non-finite loss or weights: the model is lost, the run must stop."""


@dataclass
class OptimizerConfig:
    """Adam with a linear warm-up then cosine decay (paper appendix A.1 defaults)."""

    lr: float = 2e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-6
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optimizer.lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"optimizer.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear from 0 over `warmup` steps, then cosine to `min_ratio`."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def plain(value: Any) -> Any:
    """A hyper-parameter as data that a weights-only load reads back (`methods.checkpoint`):
    dataclasses as dicts, paths as strings, inside lists, tuples and dicts too."""
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item) for item in value)
    return value


class MethodModule(MultipleChoiceScoring, L.LightningModule):
    """Base of the methods. Subclasses implement `loss(logits, targets, batch, mask)`.

    Args:
        model: which model to train (hub id, folder, GGUF, the offline default, layer-dropped).
        optimizer: Adam and schedule settings.
    """

    # What the checkpoint this module was loaded from records about its data (the template it
    # answers with, its max_length: `first_pl.data.record`); None when it records nothing.
    data_record: dict[str, Any] | None = None

    def __init__(
        self, model: ModelSpec | None = None, optimizer: OptimizerConfig | None = None
    ) -> None:
        super().__init__()
        # Checkpoints store these as plain dicts (LightningCLI serialises dataclasses).
        self.model_spec = ModelSpec(**model) if isinstance(model, dict) else model or ModelSpec()
        self.optim = (
            OptimizerConfig(**optimizer)
            if isinstance(optimizer, dict)
            else optimizer or OptimizerConfig()
        )
        self.save_hyperparameters()
        self.hparams.update({key: plain(value) for key, value in self.hparams.items()})
        self.model = None

    def configure_model(self) -> None:
        """Build the model once; under `ModelParallelStrategy` (a device mesh is set) shard it with FSDP2."""
        if self.model is None:
            self.model = build_model(self.model_spec)
            self.model.train(self.training)
            if self.device_mesh is not None:
                shard_model(self.model, self.device_mesh)
            install_logits_at(self.model)
        datamodule = getattr(self._trainer, "datamodule", None)
        tokenizer = getattr(datamodule, "tokenizer", None)
        if tokenizer is not None:
            check_vocabulary(
                self.model,
                tokenizer,
                f"--data.tokenizer {datamodule.tokenizer_name!r}",
                f"--model.model {self.model_spec.name_or_path!r}",
                "give the data the tokenizer of the model",
            )

    def logits_at(self, batch: TrainBatch, select: torch.Tensor) -> torch.Tensor:
        """Logits `[P, V]` where `select` `[B, L]` is true: one call on the model
        (`first_pl.lm_head.logits_at`, installed as an FSDP forward by `sharding`)."""
        return getattr(self.model, LOGITS_AT)(batch["input_ids"], batch["attention_mask"], select)

    def response_logits(
        self, batch: TrainBatch
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits `[P, V]` at the response positions, their targets `[P]`, and the mask `[B, L]`."""
        mask = response_mask(batch["labels"])
        return self.logits_at(batch, mask), batch["labels"][mask], mask

    def loss(
        self, logits: torch.Tensor, targets: torch.Tensor, batch: TrainBatch, mask: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch: TrainBatch, batch_idx: int) -> torch.Tensor:
        logits, targets, mask = self.response_logits(batch)
        loss = self.loss(logits, targets, batch, mask)
        self.check_finite_loss(loss, batch_idx)
        # The mean over ranks (a no-op in one process), so distributed runs log the global loss.
        self.log(
            "train/loss",
            loss,
            prog_bar=True,
            batch_size=batch["input_ids"].shape[0],
            sync_dist=True,
        )
        return loss

    def divergence_advice(self) -> str:
        return (
            f"training diverged; lower the learning rate --model.init_args.optimizer.lr "
            f"(now {self.optim.lr:g}), or check the data and the precision"
        )

    def check_finite_loss(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Stop the fit before a NaN or inf loss reaches the weights: one backward of it makes
        every weight NaN, and the run would go on to save them as its checkpoint. Every rank
        takes the same decision (a rank raising alone would leave the others waiting)."""
        finite = bool(torch.isfinite(loss.detach()).all())
        strategy = self._trainer.strategy if self._trainer is not None else None
        if strategy is not None:
            finite = strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            raise DivergedError(
                f"train/loss is {loss.detach().float().item()} at batch {batch_idx} of epoch "
                f"{self.current_epoch}, after {self.global_step} optimizer step(s): "
                f"{self.divergence_advice()}"
            )

    def validation_step(
        self, batch: EvalBatch, batch_idx: int, dataloader_idx: int = 0
    ) -> EvalOutput:
        return self.evaluate(batch)

    def test_step(
        self, batch: EvalBatch, batch_idx: int, dataloader_idx: int = 0
    ) -> EvalOutput:
        return self.evaluate(batch)

    def predict_step(
        self, batch: EvalBatch, batch_idx: int, dataloader_idx: int = 0
    ) -> EvalOutput:
        return self.evaluate(batch)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the method class, so any checkpoint can be reloaded without its config, and
        how the data taught the model to answer (`first_pl.data.record`), so it is asked and
        tested that way; refuse to save weights that are not numbers (the file would look like
        a valid model).

        Sharded (DTensor) weights are left to Lightning's strategy: checking them here would need
        the other ranks.
        """
        state = checkpoint.get("state_dict") or {}
        bad = [
            name for name, value in state.items()
            if type(value) is torch.Tensor and value.is_floating_point()
            and not bool(torch.isfinite(value).all())
        ]  # fmt: skip
        if bad:
            raise DivergedError(
                f"the weights after {self.global_step} optimizer step(s) hold NaN or inf in "
                f"{len(bad)} tensor(s), first {bad[0]!r}; no checkpoint is saved: "
                f"{self.divergence_advice()}"
            )
        checkpoint[METHOD_KEY] = f"{type(self).__module__}.{type(self).__qualname__}"
        datamodule = getattr(self._trainer, "datamodule", None)
        if isinstance(datamodule, QADataModule):
            checkpoint[DATA_KEY] = data_record(datamodule)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse, naming both models, a checkpoint trained with another model than this
        module's config (`check_checkpoint_model`, as `--ckpt_path` does) or whose weights do not
        fit this module's model (settings such as LoRA, which the model identity leaves out).

        Without this, `--ckpt_path` of a checkpoint trained with another `model` fails deep in
        `load_state_dict` with a list of tensor names.
        """
        self.data_record = checkpoint.get(DATA_KEY)
        check_checkpoint_model(checkpoint, self.model_spec, "the checkpoint")
        state = checkpoint.get("state_dict")
        if not isinstance(state, dict) or self.model is None:
            return  # sharded checkpoints are restored by Lightning's strategy, which checks them itself
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        reshaped = [
            k for k in own
            if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
        ]  # fmt: skip
        if missing or unexpected or reshaped:
            saved = checkpoint.get("hyper_parameters", {}).get("model")
            first = (missing or unexpected or reshaped)[0]
            raise ValueError(
                f"the checkpoint was trained with model {saved} but this config builds "
                f"model {vars(self.model_spec)}: {len(missing)} missing, {len(unexpected)} "
                f"unexpected and {len(reshaped)} reshaped weight(s), first {first!r}; use the "
                "model settings the checkpoint was trained with"
            )

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(
            params,
            lr=self.optim.lr,
            betas=tuple(self.optim.betas),
            eps=self.optim.eps,
            weight_decay=self.optim.weight_decay,
            fused=fused_adam_supported(params) or None,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(self.optim.warmup_ratio * total)
        schedule = LambdaLR(
            optimizer, lambda step: warmup_cosine(step, total, warmup, self.optim.min_lr_ratio)
        )
        # `name`: the key under which LearningRateMonitor logs the rate (beside train/loss)
        scheduler = {"scheduler": schedule, "interval": "step", "name": "train/lr"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def fused_adam_supported(params: list[torch.Tensor]) -> bool:
    """Whether Adam may run as one fused kernel per step over `params`.

    Without `fused`, Adam on the CPU updates each tensor with about ten separate operations
    (PyTorch makes `foreach` the default on GPUs only): 182 ms a step for a student's 46M
    trainable weights on 2 Zen 4 cores, against 24 ms fused (`benchmarks/fig_optimizer.py`),
    a fifth of a main-job student's training time. The fused kernel takes plain floating
    tensors on the CPU or a GPU; sharded (DTensor) weights keep PyTorch's default.
    """
    return bool(params) and all(
        type(p) in (torch.Tensor, torch.nn.Parameter)
        and p.is_floating_point()
        and p.device.type in ("cpu", "cuda")
        for p in params
    )


StudentModule = MethodModule  # the name existing configs and scripts import
