"""LoRA adapters (through `peft`) for teachers and students: `model.lora: {r, alpha, dropout,
target_modules}`.

The adapters are injected into the Hugging Face model in place (`peft.inject_adapter_in_model`),
not wrapped in a `PeftModel`: everything first_pl does with a model (logits at chosen positions,
FSDP2 units per decoder layer, checkpoints of the module's state dict) sees the same
`LlamaForCausalLM` with a few `lora_A` / `lora_B` weights inside its linear layers, and only those
train. `merge_lora` folds them back into plain linear layers (W + alpha/r * B A), so an export is
an ordinary model that loads without peft and gives the same logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

# Llama's attention and MLP projections: LoRA's usual targets for decoder-only models.
LLAMA_LINEAR_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraSettingsError(ValueError):
    """A `model.lora` setting that cannot be applied; the message names the option."""


@dataclass
class LoraSettings:
    """LoRA's rank `r`, scale `alpha` (the update is alpha / r * B A), dropout on the adapter's
    input, and the names of the linear modules that get adapters (matched as name suffixes, as
    peft does)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(LLAMA_LINEAR_MODULES))

    def __post_init__(self) -> None:
        if self.r < 1:
            raise LoraSettingsError(f"model.lora.r must be >= 1, got {self.r}")
        if self.alpha <= 0:
            raise LoraSettingsError(f"model.lora.alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise LoraSettingsError(f"model.lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise LoraSettingsError("model.lora.target_modules is empty: name at least one module")


def linear_module_names(model: nn.Module) -> set[str]:
    """The last name component of every `nn.Linear` in `model` (what target_modules can name)."""
    return {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}


def add_lora(model: nn.Module, settings: LoraSettings) -> nn.Module:
    """Inject LoRA adapters into `model` in place; afterwards only the adapters are trainable.

    A target that names no linear layer of the model is refused (peft would inject nothing for
    it and the run would train less than the config says).
    """
    from peft import LoraConfig, inject_adapter_in_model

    available = linear_module_names(model)
    unknown = [t for t in settings.target_modules if t not in available]
    if unknown:
        raise LoraSettingsError(
            f"model.lora.target_modules {unknown} name no linear layer of "
            f"{type(model).__name__}; its linear layers are {sorted(available)}"
        )
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
    )
    model = inject_adapter_in_model(config, model)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA adapter into its base linear layer and remove the adapter, in place.

    A model without adapters is returned unchanged.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    adapted = [(name, m) for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, module in adapted:
        module.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    return model


def has_lora(model: nn.Module) -> bool:
    """Whether `model` holds LoRA adapters that are not merged yet."""
    return any("lora_" in name for name, _ in model.named_parameters())
