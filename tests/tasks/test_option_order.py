"""Option order: BIG-bench options are shuffled by a hash of the example id, so the file's order
(the answer first, in every example of `physics`) never decides the letter."""

from __future__ import annotations

import math

import pytest
from first_pl_testing import BIGBENCH

from first_pl.tasks import BigBench, MCExample
from first_pl.tasks.option_order import SKEW_SIGMAS, AnswerPositions, shuffled

TASKS = ("social_iqa", "strategyqa", "physics", "physical_intuition")
SPLITS = ("train", "validation", "test")


def test_shuffle_is_pinned_and_independent_of_the_source_order():
    example = MCExample(id="physics-7", question="q", choices=("right", "w1", "w2", "w3"), answer=0)
    # pinned: a change of the shuffle changes every letter (and invalidates teacher stores)
    assert shuffled(example) == MCExample(
        id="physics-7", question="q", choices=("w1", "w2", "right", "w3"), answer=2
    )
    reordered = MCExample(id="physics-7", question="q", choices=("w2", "w3", "right", "w1"), answer=2)
    assert shuffled(reordered) == shuffled(example)  # the file's order no longer matters
    other = shuffled(MCExample(id="physics-8", question="q", choices=example.choices, answer=0))
    assert other.choices != shuffled(example).choices  # the order depends on the id


def test_shuffle_keeps_duplicate_texts_and_the_gold_option():
    example = MCExample(id="d", question="q", choices=("same", "same", "gold"), answer=2)
    out = shuffled(example)
    assert sorted(out.choices) == sorted(example.choices) and out.choices[out.answer] == "gold"


def balanced(positions: AnswerPositions) -> bool:
    return all(
        count <= mean + SKEW_SIGMAS * math.sqrt(var)
        for count, mean, var in zip(positions.counts, positions.expected, positions.variance, strict=True)
    )


@pytest.mark.parametrize("task", TASKS)
def test_no_letter_holds_more_than_its_share_on_the_shared_bigbench_files(task):
    source = BigBench(str(BIGBENCH / task), option_order="source")
    default = BigBench(str(BIGBENCH / task))
    for split in SPLITS:
        before, after = source.load(split), default.load(split)
        assert [e.id for e in before] == [e.id for e in after]
        assert [e.choices[e.answer] for e in before] == [e.choices[e.answer] for e in after]
        positions = AnswerPositions.of(after)
        assert positions.total == len(after) and balanced(positions), (split, positions)
        assert positions.skewed("ABCDE") == []
        assert default.load(split) == after  # stable across loads
    if task == "physics":  # the file lists the answer first: the check does catch it
        positions = AnswerPositions.of(source.load("test"))
        assert positions.counts[0] == positions.total == 104 and positions.skewed("ABCDE") == ["A"]


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
    with pytest.raises(ValueError, match=r"BigBench\.option_order must be one of \('shuffled', 'source'\), got 'random'"):
        BigBench(str(BIGBENCH / "physics"), option_order="random")
