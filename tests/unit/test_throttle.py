"""The OSD's admission of client ops (osd/throttle.py): by count and bytes, first come first
served, an op bigger than the byte cap let in alone."""

from __future__ import annotations

import asyncio

import pytest

from osd.throttle import Admission
from tests.waiting import wait_for_async


@pytest.mark.asyncio
async def test_ops_wait_their_turn_when_count_or_bytes_are_full() -> None:
    a = Admission(max_ops=2, max_bytes=100)
    assert a.try_take(60) and not a.try_take(60)       # bytes full
    assert a.try_take(30)
    order: list[str] = []

    async def op(name: str, cost: int) -> None:
        await a.take(cost)
        order.append(name)
    first = asyncio.create_task(op("first", 50))
    second = asyncio.create_task(op("second", 5))       # fits by bytes, but comes after
    await wait_for_async(lambda: a.waited == 2, 1, "both ops waiting")
    assert order == []
    a.give(60)
    await wait_for_async(lambda: order, 1, "the first op admitted")
    assert order == ["first"]                           # count is full now (30 + 50)
    a.give(30)
    await asyncio.gather(first, second)
    assert order == ["first", "second"] and (a.ops, a.bytes) == (2, 55)


@pytest.mark.asyncio
async def test_an_op_bigger_than_the_byte_cap_goes_in_alone() -> None:
    a = Admission(max_ops=10, max_bytes=100)
    assert a.try_take(10)
    big = asyncio.create_task(a.take(500))
    await wait_for_async(lambda: a.waited == 1, 1, "the big op waiting")
    assert not big.done()
    a.give(10)
    await asyncio.wait_for(big, 1)
    assert (a.ops, a.bytes) == (1, 500) and not a.try_take(1)
