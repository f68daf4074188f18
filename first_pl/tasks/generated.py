"""The generated multiple-choice task family: the offline default, deterministic by seed.

It is built to leave a fine-tuned teacher good but imperfect, where tuning-induced
over-confidence shows (DESIGN.md section 4):

- kinds that draw on what a small pretrained model already knows (category membership, the odd
  one out, comparing numbers), of graded difficulty, with 2 to 5 options;
- genuinely uncertain items (a fair coin or die: the best achievable confidence is 1/n);
- controlled label noise: a fraction of answers in every split replaced by a different option,
  so the best achievable accuracy is 1 - noise and a perfectly calibrated model never says 1.0.

`GeneratedInstructions` gives instruction data in Alpaca's schema from the same vocabulary, for
the out-of-domain path (train on instructions, test on BIG-bench multiple choice).
"""

from __future__ import annotations

import random

from first_pl.tasks.base import SPLITS, InstructionExample, MCExample, Task

CATEGORIES: dict[str, tuple[str, ...]] = {
    "fruit": ("apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "peach", "pear", "plum", "strawberry", "watermelon"),
    "animal": ("cat", "dog", "horse", "lion", "tiger", "elephant", "rabbit", "monkey", "zebra", "giraffe", "bear", "wolf"),
    "colour": ("red", "blue", "green", "yellow", "purple", "black", "white", "brown", "pink", "grey", "violet", "orange"),
    "country": ("France", "Japan", "Brazil", "Canada", "Egypt", "India", "Italy", "Mexico", "Spain", "Germany", "Kenya", "Peru"),
    "vehicle": ("car", "bus", "truck", "bicycle", "train", "airplane", "boat", "motorcycle", "taxi", "tractor", "scooter", "ship"),
    "tool": ("hammer", "saw", "screwdriver", "wrench", "drill", "shovel", "axe", "pliers", "chisel", "rake", "ladder", "needle"),
    "body part": ("hand", "foot", "nose", "ear", "elbow", "knee", "shoulder", "finger", "eye", "mouth", "ankle", "wrist"),
    "instrument": ("piano", "guitar", "violin", "drum", "flute", "trumpet", "cello", "harp", "saxophone", "clarinet", "banjo", "organ"),
}
DIE_FACES = ("one", "two", "three", "four", "five", "six")
KINDS = ("category", "odd_one_out", "largest_number", "fair_die")
SPLIT_SEEDS = {split: index for index, split in enumerate(SPLITS)}


def words_outside(category: str) -> list[str]:
    """Words of every other category, minus any that also belong to this one (orange)."""
    own = set(CATEGORIES[category])
    return sorted({w for c, ws in CATEGORIES.items() if c != category for w in ws} - own)


def category_item(rng: random.Random, n: int) -> tuple[str, list[str], int]:
    """Which of these is a <category>? (easy: pretrained knowledge answers it)."""
    category = rng.choice(sorted(CATEGORIES))
    answer = rng.choice(CATEGORIES[category])
    options = [answer, *rng.sample(words_outside(category), n - 1)]
    rng.shuffle(options)
    return f"Which of these is a {category}?", options, options.index(answer)


def odd_one_out_item(rng: random.Random, n: int) -> tuple[str, list[str], int]:
    """Which word does not belong? (medium: needs the shared category of the others)."""
    category = rng.choice(sorted(CATEGORIES))
    odd = rng.choice(words_outside(category))
    options = [odd, *rng.sample(CATEGORIES[category], n - 1)]
    rng.shuffle(options)
    return "Which word does not belong with the others?", options, options.index(odd)


def largest_number_item(rng: random.Random, n: int) -> tuple[str, list[str], int]:
    """Which number is the largest? (harder for a small model; close values are hardest)."""
    numbers = rng.sample(range(1, 100), n)
    options = [str(x) for x in numbers]
    return "Which number is the largest?", options, numbers.index(max(numbers))


def fair_die_item(rng: random.Random, n: int) -> tuple[str, list[str], int]:
    """A fair die shows one of n faces: no model can beat 1/n, so confidence must stay 1/n."""
    faces = sorted(rng.sample(range(1, 7), n))
    options = [DIE_FACES[x - 1] for x in faces]  # words: " one" is one token, " 1" is two in SmolLM2
    return f"A fair die is rolled until it shows one of {', '.join(options)}. Which number does it show?", options, rng.randrange(n)


MAKERS = {
    "category": category_item,
    "odd_one_out": odd_one_out_item,
    "largest_number": largest_number_item,
    "fair_die": fair_die_item,
}


class GeneratedMC(Task):
    """A seeded mixture of multiple-choice kinds with optional label noise.

    kinds: a mapping kind -> weight (relative frequency); see `KINDS`.
    label_noise: fraction of examples (in every split) whose answer is replaced by another
        option at random, so the achievable accuracy is below 1.
    """

    def __init__(
        self,
        train_size: int = 2000,
        validation_size: int = 300,
        test_size: int = 500,
        kinds: dict[str, float] | None = None,
        min_options: int = 2,
        max_options: int = 5,
        label_noise: float = 0.0,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        self.sizes = {"train": train_size, "validation": validation_size, "test": test_size}
        self.kinds = dict(kinds) if kinds is not None else {k: 1.0 for k in KINDS}
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"GeneratedMC.kinds has unknown kinds {unknown}; expected some of {list(KINDS)}")
        if not 2 <= min_options <= max_options <= 5:
            raise ValueError(f"GeneratedMC needs 2 <= min_options <= max_options <= 5, got {min_options}, {max_options}")
        if not 0.0 <= label_noise < 1.0:
            raise ValueError(f"GeneratedMC.label_noise must be in [0, 1), got {label_noise}")
        self.min_options, self.max_options = min_options, max_options
        self.label_noise = label_noise
        self.seed = seed
        super().__init__(name)

    def default_name(self) -> str:
        return "generated"

    def settings(self) -> dict:
        return {
            **super().settings(),
            "sizes": self.sizes,
            "kinds": self.kinds,
            "options": [self.min_options, self.max_options],
            "label_noise": self.label_noise,
            "seed": self.seed,
        }

    def load(self, split: str) -> list[MCExample]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        rng = random.Random(self.seed * 1000 + SPLIT_SEEDS[split])
        # A separate stream for the noise, so changing `label_noise` changes labels only.
        noise_rng = random.Random(self.seed * 1000 + SPLIT_SEEDS[split] + 500)
        names = sorted(self.kinds)
        weights = [self.kinds[k] for k in names]
        examples = []
        for i in range(self.sizes[split]):
            kind = rng.choices(names, weights)[0]
            n = rng.randint(self.min_options, self.max_options)
            if kind == "fair_die":
                n = min(n, 6)
            question, options, answer = MAKERS[kind](rng, n)
            if noise_rng.random() < self.label_noise:
                answer = noise_rng.choice([j for j in range(n) if j != answer])
            examples.append(
                MCExample(
                    id=f"{self.name}-{split}-{i}", question=question, choices=tuple(options), answer=answer, kind=kind
                )
            )
        return examples


INSTRUCTION_MAKERS = ("name_member", "membership", "larger")


def instruction_item(rng: random.Random) -> tuple[str, str]:
    """One instruction and its answer, from the same vocabulary as `GeneratedMC`."""
    kind = rng.choice(INSTRUCTION_MAKERS)
    category = rng.choice(sorted(CATEGORIES))
    if kind == "name_member":
        return f"Name one {category}.", rng.choice(CATEGORIES[category]).capitalize() + "."
    if kind == "membership":
        is_member = rng.random() < 0.5
        word = rng.choice(CATEGORIES[category] if is_member else words_outside(category))
        return f"Is {word} a {category}? Answer yes or no.", "Yes." if is_member else "No."
    a, b = rng.sample(range(1, 100), 2)
    return f"Which is larger, {a} or {b}?", f"{max(a, b)}."


class GeneratedInstructions(Task):
    """Instruction data in Alpaca's schema, generated by seed (the offline stand-in for Alpaca)."""

    def __init__(
        self, train_size: int = 2000, validation_size: int = 200, test_size: int = 200, seed: int = 0, name: str | None = None
    ) -> None:
        self.sizes = {"train": train_size, "validation": validation_size, "test": test_size}
        self.seed = seed
        super().__init__(name)

    def default_name(self) -> str:
        return "generated_instructions"

    def settings(self) -> dict:
        return {**super().settings(), "sizes": self.sizes, "seed": self.seed}

    def load(self, split: str) -> list[InstructionExample]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        rng = random.Random(self.seed * 1000 + 100 + SPLIT_SEEDS[split])
        items = [instruction_item(rng) for _ in range(self.sizes[split])]
        return [
            InstructionExample(id=f"{self.name}-{split}-{i}", instruction=q, input="", output=a)
            for i, (q, a) in enumerate(items)
        ]
