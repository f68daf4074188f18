"""Test helpers importable from any test file (`from first_pl_testing import ...`).

Kept out of conftest.py: several conftest modules exist under tests/, so `from first_pl_testing import`
would be ambiguous.
"""

from __future__ import annotations

from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
BIGBENCH = SHARED / "data" / "bigbench"


def build_tiny_tokenizer():
    """A word-level tokenizer over the generated tasks' words: " A" is one token, as in SmolLM2."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from first_pl.data.template import PromptTemplate
    from first_pl.tasks.generated import GeneratedInstructions, GeneratedMC

    template = PromptTemplate()
    texts = []
    for split in ("train", "validation", "test"):
        for ex in GeneratedMC(train_size=200, validation_size=50, test_size=50).load(split):
            texts.append(template.mc_prompt(ex) + template.mc_response(ex))
        for ex in GeneratedInstructions(train_size=100, validation_size=20, test_size=20).load(
            split
        ):
            texts.append(template.instruction_prompt(ex) + template.instruction_response(ex))
    texts.append("A B C D E Yes No yes no")
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", "<eos>"])
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>"
    )


CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL_METHODS = ("finetune", "distill", "ls_distill", "first")


def tiny_pipeline(
    model_dir: Path,
    out: Path,
    methods: tuple[str, ...] = ALL_METHODS,
    steps: dict[str, int] | None = None,
    sizes: tuple[int, int, int] = (24, 16, 16),
    ood: bool = True,
):
    """The offline pipeline on the tiny model: 2 steps per model unless `steps` says otherwise."""
    from first_pl.pipeline.pipeline import DEFAULT_STUDENTS, Pipeline, TrainStage

    spec = {"name_or_path": str(model_dir), "keep_every": None, "keep_layers": None}
    model = {"model": {"init_args": {"model": spec}}}
    steps = steps or {}
    students = {
        method: TrainStage(
            str(CONFIGS / "model" / Path(DEFAULT_STUDENTS[method].config).name),
            steps.get(method, 2),
            model,
        )
        for method in methods
    }
    train, validation, test = sizes
    physics = {
        "class_path": "first_pl.tasks.BigBench",
        "init_args": {"path": str(BIGBENCH / "physics"), "limit": 8},
    }
    return Pipeline(
        output_dir=str(out),
        trainer=str(CONFIGS / "trainer" / "cpu.yaml"),
        data=str(CONFIGS / "data" / "generated.yaml"),
        data_overrides={
            "init_args": {
                "tokenizer": str(model_dir),
                "batch_size": 8,
                "train_task": {
                    "init_args": {
                        "train_size": train,
                        "validation_size": validation,
                        "test_size": test,
                    }
                },
            }
        },
        ood_tasks=[physics] if ood else [],
        teacher=TrainStage(str(CONFIGS / "model" / "finetune_smollm2.yaml"), 2, model),
        students=students,
        extract_batch_size=8,
    )


def tiny_run_args(
    model_dir: Path,
    run: Path,
    *extra: str,
    sizes: tuple[int | None, int | None, int | None] = (16, None, None),
    batch_size: int = 8,
) -> list[str]:
    """`first-pl fit` (or test, predict) arguments, after the command, for a tiny FineTune run of
    `model_dir` on the generated task (trainer cpu.yaml, data generated.yaml, model
    finetune_smollm2.yaml) with its checkpoints and logs in `run`: `sizes` gives the train /
    validation / test examples (None: the config's), then `extra` options in order (a later
    option wins)."""
    splits = [
        arg
        for split, size in zip(("train", "validation", "test"), sizes, strict=True)
        if size is not None
        for arg in (f"--data.init_args.train_task.init_args.{split}_size", str(size))
    ]
    return [
        "--config", str(CONFIGS / "trainer" / "cpu.yaml"),
        "--config", str(CONFIGS / "data" / "generated.yaml"),
        "--config", str(CONFIGS / "model" / "finetune_smollm2.yaml"),
        "--model.init_args.model.name_or_path", str(model_dir),
        "--data.init_args.tokenizer", str(model_dir),
        *splits,
        "--data.init_args.batch_size", str(batch_size),
        "--trainer.default_root_dir", str(run),
        "--trainer.logger.init_args.save_dir", str(run),
        *extra,
    ]  # fmt: skip
