"""Option order: the gold answers of each split are spread evenly over the option positions (each
position within one of its share), so neither the file's order (the answer first, in every
example of `physics`) nor the luck of a shuffle decides what always answering one letter scores."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from fractions import Fraction

import pytest
from first_pl_testing import BIGBENCH

from first_pl.tasks import BigBench, MCExample
from first_pl.tasks.option_order import AnswerPositions, gold_positions, ordered, placed

TASKS = ("social_iqa", "strategyqa", "physics", "physical_intuition")
SPLITS = ("train", "validation", "test")


def four(i: int, answer: int = 0) -> MCExample:
    return MCExample(id=f"physics-{i}", question="q", choices=("right", "w1", "w2", "w3"), answer=answer)


def test_balanced_order_is_pinned_and_independent_of_the_source_order():
    # pinned: a change of the assignment changes letters (and invalidates teacher stores)
    assert [(e.choices, e.answer) for e in ordered([four(i) for i in range(6)], "balanced", "physics")] == [
        (("w2", "w3", "right", "w1"), 2),
        (("w3", "right", "w1", "w2"), 1),
        (("w2", "right", "w3", "w1"), 1),
        (("w2", "w1", "w3", "right"), 3),
        (("right", "w2", "w1", "w3"), 0),
        (("right", "w1", "w2", "w3"), 0),
    ]
    reordered = [MCExample(id=f"physics-{i}", question="q", choices=("w2", "w3", "right", "w1"), answer=2) for i in range(6)]
    # the file's order of options no longer matters
    assert ordered(reordered, "balanced", "physics") == ordered([four(i) for i in range(6)], "balanced", "physics")
    assert ordered([four(i) for i in range(6)], "source", "physics") == [four(i) for i in range(6)]


def test_placed_keeps_duplicate_texts_and_the_gold_option():
    example = MCExample(id="d", question="q", choices=("same", "same", "gold"), answer=2)
    for position in range(3):
        out = placed(example, position)
        assert sorted(out.choices) == sorted(example.choices) and out.answer == position
        assert out.choices[position] == "gold"


def deviation(examples: list[MCExample]) -> float:
    """The largest |gold count - expected count| over positions (exact fractions)."""
    width = max(len(e.choices) for e in examples)
    counts, expected = [0] * width, [Fraction(0)] * width
    for e in examples:
        counts[e.answer] += 1
        for p in range(len(e.choices)):
            expected[p] += Fraction(1, len(e.choices))
    return float(max(abs(c - x) for c, x in zip(counts, expected, strict=True)))


def within_one_per_option_count(examples: list[MCExample]) -> bool:
    """Among the examples with C options, every position holds floor or ceil of n / C."""
    for count in {len(e.choices) for e in examples}:
        group = [e for e in examples if len(e.choices) == count]
        held = [sum(e.answer == p for e in group) for p in range(count)]
        if max(held) - min(held) > 1 or sum(held) != len(group):
            return False
    return True


def test_mixed_option_counts_stay_within_one_of_their_share():
    for seed in range(300):
        rng = random.Random(seed)
        sizes = [rng.randint(2, 8) for _ in range(rng.randint(1, 60))]
        examples = [
            MCExample(id=f"e{i}", question="q", choices=tuple(f"o{j}" for j in range(n)), answer=rng.randrange(n))
            for i, n in enumerate(sizes)
        ]
        out = ordered(examples, "balanced", f"salt{seed}")
        assert within_one_per_option_count(out) and deviation(out) < 1, seed
        assert [e.choices[e.answer] for e in out] == [e.choices[e.answer] for e in examples]
        assert [e.id for e in out] == [e.id for e in examples]  # the examples keep their order


@pytest.mark.parametrize("task", TASKS)
def test_every_split_of_the_shared_bigbench_files_is_balanced_within_one(task):
    source = BigBench(str(BIGBENCH / task), option_order="source")
    default = BigBench(str(BIGBENCH / task))
    for split in SPLITS:
        before, after = source.load(split), default.load(split)
        assert [e.id for e in before] == [e.id for e in after]
        assert [e.choices[e.answer] for e in before] == [e.choices[e.answer] for e in after]
        assert within_one_per_option_count(after) and deviation(after) < 1, split
        assert AnswerPositions.of(after).skewed("ABCDE") == []
        assert BigBench(str(BIGBENCH / task)).load(split) == after  # stable across loads
    if task == "physics":  # the file lists the answer first: the check does catch it
        positions = AnswerPositions.of(source.load("test"))
        assert positions.counts[0] == positions.total == 124 and positions.skewed("ABCDE") == ["A"]


def test_a_limited_split_is_balanced_as_evaluated():
    limited = BigBench(str(BIGBENCH / "physics"), limit=30).load("test")
    assert len(limited) == 30 and AnswerPositions.of(limited).counts == [8, 8, 7, 7]


def test_the_order_is_the_same_in_another_process():
    """No random state and no Python string hashing: another interpreter with another hash seed
    gives the same letters."""
    code = (
        "import json; from first_pl.tasks import BigBench; "
        f"print(json.dumps([[e.id, e.choices, e.answer] for e in BigBench({str(BIGBENCH / 'physics')!r}).load('test')]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    here = [[e.id, list(e.choices), e.answer] for e in BigBench(str(BIGBENCH / "physics")).load("test")]
    assert json.loads(out.stdout) == here


def test_constant_answer_is_the_best_single_position():
    examples = [four(0, 1), four(1, 1), four(2, 3), MCExample(id="b", question="q", choices=("x", "y"), answer=0)]
    assert AnswerPositions.of(examples).constant_answer() == (1, 0.5)
    assert AnswerPositions.of([four(0, 2), four(1, 0)]).constant_answer() == (0, 0.5)  # ties: first


def test_gold_positions_do_not_depend_on_the_order_of_the_examples():
    examples = [four(i) for i in range(9)]
    forward = dict(zip([e.id for e in examples], gold_positions(examples, "s"), strict=True))
    backward = dict(zip([e.id for e in examples[::-1]], gold_positions(examples[::-1], "s"), strict=True))
    assert forward == backward


def test_answer_positions_expectation_is_exact():
    examples = [
        MCExample(id="a", question="q", choices=("x", "y"), answer=1),
        MCExample(id="b", question="q", choices=("x", "y", "z", "w"), answer=0),
    ]
    positions = AnswerPositions.of(examples)
    assert positions.counts == [1, 1, 0, 0]
    assert positions.expected == pytest.approx([0.75, 0.75, 0.25, 0.25])
    assert positions.variance == pytest.approx([0.25 + 0.1875, 0.25 + 0.1875, 0.1875, 0.1875])
    assert positions.summary("AB") == "A 1 (0.8), B 1 (0.8), #3 0 (0.2), #4 0 (0.2)"


def test_unknown_option_order_is_refused():
    with pytest.raises(ValueError, match=r"BigBench\.option_order must be one of \('balanced', 'source'\), got 'shuffled'"):
        BigBench(str(BIGBENCH / "physics"), option_order="shuffled")
