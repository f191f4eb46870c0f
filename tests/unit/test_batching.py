"""The service's dynamic batcher: who is scored with whom, and what each request gets back.

A fake scorer stands in for the model: it answers each request with its own id list and records
the batches it was given; a gate holds the first batch so that the next requests queue behind it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from rollrisk.serving.batching import Batcher


@dataclass(frozen=True)
class Req:
    name: str
    key: str
    ids: tuple[str, ...]


class FakeScorer:
    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.started = threading.Event()
        self.fail_on = fail_on

    def __call__(self, requests: Sequence[Req]) -> list[str]:
        self.started.set()
        self.gate.wait(timeout=10)
        self.batches.append([r.name for r in requests])
        if self.fail_on is not None and any(r.name == self.fail_on for r in requests):
            raise RuntimeError(f"cannot score {self.fail_on}")
        return [f"answer to {r.name}" for r in requests]


def _batcher(scorer: FakeScorer, max_size: int = 1_000) -> Batcher[Req, str]:
    return Batcher(scorer, key_of=lambda r: r.key, ids_of=lambda r: list(r.ids), max_size=max_size)


async def _submit_behind_a_busy_scorer(
    batcher: Batcher[Req, str], scorer: FakeScorer, first: Req, queued: list[Req]
) -> list[object]:
    """Submit ``first``; once the scorer is busy with it, queue ``queued``; then let it go."""
    tasks = [asyncio.ensure_future(batcher.submit(first))]
    while not scorer.started.is_set():
        await asyncio.sleep(0.001)
    tasks += [asyncio.ensure_future(batcher.submit(r)) for r in queued]
    await asyncio.sleep(0.01)  # every queued request is in the queue now
    scorer.gate.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_a_request_finding_the_scorer_idle_is_scored_at_once_alone():
    scorer = FakeScorer()
    scorer.gate.set()
    batcher = _batcher(scorer)
    answer = asyncio.run(batcher.submit(Req("a", "k", ("1",))))
    assert answer == "answer to a"
    assert scorer.batches == [["a"]]
    batcher.close()


def test_requests_queued_behind_a_batch_are_scored_together_each_getting_its_own_answer():
    scorer = FakeScorer()
    batcher = _batcher(scorer)
    queued = [Req(f"q{i}", "k", (str(i),)) for i in range(5)]
    answers = asyncio.run(
        _submit_behind_a_busy_scorer(batcher, scorer, Req("first", "k", ("0a",)), queued)
    )
    assert answers == ["answer to first"] + [f"answer to q{i}" for i in range(5)]
    assert scorer.batches == [["first"], ["q0", "q1", "q2", "q3", "q4"]]
    assert (batcher.batches, batcher.largest_batch) == (2, 5)
    batcher.close()


def test_other_keys_shared_ids_and_the_size_cap_split_batches_in_arrival_order():
    scorer = FakeScorer()
    batcher = _batcher(scorer, max_size=4)
    queued = [
        Req("a", "k1", ("1",)),
        Req("b", "k2", ("2",)),  # another as-of / set of tables: not with a
        Req("c", "k1", ("1",)),  # shares account 1 with a: not with a
        Req("d", "k1", ("3", "4")),
        Req("e", "k1", ("5", "6")),  # a + d + e would hold 5 ids > 4
        Req("f", "k2", ("7",)),
    ]
    answers = asyncio.run(
        _submit_behind_a_busy_scorer(batcher, scorer, Req("x", "k0", ("0",)), queued)
    )
    assert answers == ["answer to x"] + [f"answer to {r.name}" for r in queued]
    assert scorer.batches == [["x"], ["a", "d"], ["b", "f"], ["c", "e"]]
    batcher.close()


def test_a_request_larger_than_the_cap_is_scored_alone():
    scorer = FakeScorer()
    scorer.gate.set()
    batcher = _batcher(scorer, max_size=2)
    assert asyncio.run(batcher.submit(Req("big", "k", ("1", "2", "3")))) == "answer to big"
    batcher.close()


def test_a_failing_request_fails_alone_and_the_rest_of_its_batch_is_answered():
    scorer = FakeScorer(fail_on="bad")
    batcher = _batcher(scorer)
    queued = [Req("ok1", "k", ("1",)), Req("bad", "k", ("2",)), Req("ok2", "k", ("3",))]
    answers = asyncio.run(
        _submit_behind_a_busy_scorer(batcher, scorer, Req("x", "k", ("0",)), queued)
    )
    assert answers[:2] == ["answer to x", "answer to ok1"]
    assert isinstance(answers[2], RuntimeError) and "cannot score bad" in str(answers[2])
    assert answers[3] == "answer to ok2"
    # the batch, then each of its requests alone
    assert scorer.batches == [["x"], ["ok1", "bad", "ok2"], ["ok1"], ["bad"], ["ok2"]]
    batcher.close()


def test_a_failure_of_a_lone_request_reaches_its_caller():
    scorer = FakeScorer(fail_on="bad")
    scorer.gate.set()
    batcher = _batcher(scorer)
    with pytest.raises(RuntimeError, match="cannot score bad"):
        asyncio.run(batcher.submit(Req("bad", "k", ("1",))))
    batcher.close()


def test_max_size_must_be_positive():
    with pytest.raises(ValueError, match="max_size must be at least 1"):
        Batcher(lambda rs: [], key_of=lambda r: 0, ids_of=lambda r: [], max_size=0)
