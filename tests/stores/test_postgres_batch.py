"""PostgreSQL's group commit, without a server: which writes go out together, and never an empty statement."""

from __future__ import annotations

import asyncio

from agentkeel.stores.postgres_batch import Batcher


class Recorder:
    """``run_many`` and ``run_one`` that answer at once and remember what each was given."""

    def __init__(self) -> None:
        self.many: list[list[str]] = []
        self.one: list[str] = []

    async def run_many(self, items: list[str]) -> list[str | BaseException]:
        self.many.append(list(items))
        return [item.upper() for item in items]

    async def run_one(self, item: str) -> str:
        self.one.append(item)
        return item.upper()

    def batcher(self) -> Batcher[str, str]:
        return Batcher(run_many=self.run_many, run_one=self.run_one)


async def test_writes_queued_in_one_loop_turn_share_one_statement() -> None:
    recorder = Recorder()
    batcher = recorder.batcher()
    assert await asyncio.gather(*(batcher.submit(name) for name in ("a", "b", "c"))) == ["A", "B", "C"]
    assert recorder.many == [["a", "b", "c"]] and recorder.one == []
    assert batcher.batches == 1


async def test_a_write_right_after_an_answer_goes_out_once_and_no_empty_statement_follows() -> None:
    # The answer wakes the caller before the statement's task has finished: the caller's next write schedules a
    # start, and the finished statement starts what queued too. Both in one turn: only one of them may send it.
    recorder = Recorder()
    batcher = recorder.batcher()
    for name in ("a", "b", "c", "d"):
        assert await batcher.submit(name) == name.upper()
    pending = [batcher.submit(name) for name in ("e", "f")]
    assert await asyncio.gather(*pending) == ["E", "F"]  # (an empty statement would have gone out before theirs)
    assert recorder.one == ["a", "b", "c", "d"]
    assert recorder.many == [["e", "f"]]
    assert batcher.batches == 1


async def test_a_failed_batch_statement_answers_each_write_on_its_own() -> None:
    recorder = Recorder()

    async def refuse(items: list[str]) -> list[str | BaseException]:
        raise RuntimeError("a run id is taken")

    async def one(item: str) -> str:
        if item == "taken":
            raise ValueError(f"{item} exists")
        return await recorder.run_one(item)

    batcher: Batcher[str, str] = Batcher(run_many=refuse, run_one=one)
    outcomes = await asyncio.gather(*(batcher.submit(n) for n in ("x", "taken", "y")), return_exceptions=True)
    assert outcomes[0] == "X" and outcomes[2] == "Y"
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "taken exists"
    assert sorted(recorder.one) == ["x", "y"]
    assert batcher.batches == 0
