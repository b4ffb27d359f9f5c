"""Swift's Range rules: several ranges, dropped unsatisfiable ones, 416, ignored headers and
too costly requests, and the multipart/byteranges framing."""

from __future__ import annotations

import pytest

from gateway.swift_ranges import Multipart, Unsatisfiable, ranges_for


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    ("bytes=0-1,5-9", [(0, 1), (5, 9)]),
    ("bytes=5-", [(5, 9)]),
    ("bytes=-3", [(7, 9)]),
    ("bytes=-30", [(0, 9)]),
    ("bytes=8-20,0-0", [(8, 9), (0, 0)]),          # the order asked, ends clipped
    ("bytes=0-1,50-60", [(0, 1)]),                  # the unsatisfiable one dropped
    ("bytes=3-1", None),                            # does not parse: the whole object
    ("bytes=a-b", None),
    ("items=0-1", None),
    ("bytes=0-1,,2-3", None),
    ("bytes=" + ",".join(f"{i}-{i}" for i in range(10)) + ",0-9,0-9,0-9", None),  # overlaps
])
def test_ranges_for_a_ten_byte_object(header: str | None,
                                      expected: list[tuple[int, int]] | None) -> None:
    assert ranges_for(header, 10) == expected


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=20-30,40-", "bytes=-0"])
def test_nothing_satisfiable_is_416(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        ranges_for(header, 10)


def test_more_than_fifty_ranges_send_the_whole_object() -> None:
    assert ranges_for("bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in range(51)), 200) is None
    assert len(ranges_for("bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in range(50)), 200)
               or []) == 50


def test_multipart_framing_is_swifts_and_its_length_is_exact() -> None:
    data = b"0123456789"
    body = Multipart("text/plain", 10, [(0, 1), (5, 9)], boundary="b0und")
    out = b"".join(body.head(i) + data[a:b + 1] for i, (a, b) in enumerate(body.ranges))
    out += body.tail()
    assert out == (b"--b0und\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n"
                   b"01\r\n--b0und\r\nContent-Type: text/plain\r\n"
                   b"Content-Range: bytes 5-9/10\r\n\r\n56789\r\n--b0und--")
    assert body.length() == len(out)
    assert body.content_type == "multipart/byteranges;boundary=b0und"
