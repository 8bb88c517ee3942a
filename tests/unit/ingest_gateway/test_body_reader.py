import asyncio

import pytest

from ingest_gateway.body import BodyProblem
from ingest_gateway.body_reader import BodyReader, ClientGone

pytestmark = pytest.mark.unit


def channel(chunks, *, then_disconnect=False, stall=False):
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)]
    if then_disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})
    received = []

    async def receive():
        if not messages:
            assert stall, "read past the end of the body"
            await asyncio.sleep(3600)
        received.append(messages[0])
        return messages.pop(0)

    return receive, received


def run(coro):
    return asyncio.run(coro)


def test_read_returns_the_whole_body():
    receive, _ = channel([b"ab", b"", b"cd"])
    reader = BodyReader(receive)
    assert run(reader.read(10)) == b"abcd" and reader.complete


def test_read_refuses_past_the_cap_naming_the_body():
    receive, _ = channel([b"x" * 6, b"x" * 6, b"x"])
    reader = BodyReader(receive)
    with pytest.raises(BodyProblem) as info:
        run(reader.read(10))
    assert (info.value.status, info.value.param) == (413, "body")
    assert "limit of 10 bytes" in info.value.message
    assert not reader.complete


def test_discard_reads_the_rest_so_the_answer_can_be_read():
    receive, received = channel([b"x" * 100] * 5)
    reader = BodyReader(receive)
    assert run(reader.discard(1000, 5.0)) is True
    assert len(received) == 5 and reader.complete


def test_discard_gives_up_past_its_byte_bound():
    receive, received = channel([b"x" * 100] * 50)
    reader = BodyReader(receive)
    assert run(reader.discard(250, 5.0)) is False
    assert len(received) == 3


def test_discard_gives_up_after_its_timeout():
    receive, received = channel([b"x", b"y"], then_disconnect=True, stall=True)
    received_before_stall = 2
    reader = BodyReader(receive)

    async def stalling():
        if len(received) < received_before_stall:
            return await receive()
        await asyncio.sleep(3600)  # a client that stops sending mid-body

    reader._receive = stalling
    assert run(reader.discard(1000, 0.05)) is False
    assert len(received) == received_before_stall and not reader.complete


def test_a_client_that_disconnects_is_reported():
    receive, _ = channel([b"ab"], then_disconnect=True)
    reader = BodyReader(receive)
    with pytest.raises(ClientGone):
        run(reader.read(10))
    receive, _ = channel([b"ab"], then_disconnect=True)
    assert run(BodyReader(receive).discard(10, 1.0)) is False
