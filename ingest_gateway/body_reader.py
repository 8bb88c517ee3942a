"""Reading a request body within a cap, and discarding the rest before an early answer.

A server that answers before the client finished sending, then closes the connection
(``Connection: close``, HTTP/1.0, or a proxy that does so), leaves unread bytes in the
kernel: the close becomes a TCP reset and a client still writing its body never reads the
answer. So a refusal sent before the body was read (a bad key, a 413, a 429) first reads
and discards what is left, up to ``discard_bytes`` and ``discard_timeout_s``; past either
bound the connection is closed anyway (a client sending gigabytes gets a reset).
"""

from __future__ import annotations

import asyncio
from typing import Final

from starlette.types import Receive

from ingest_gateway.body import BodyProblem

TOO_LARGE: Final = "larger than the limit of {cap} bytes"


class ClientGone(Exception):
    """The client disconnected before sending its whole body."""


class BodyReader:
    """One request's body, read at most once, from the ASGI ``receive`` channel."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.complete = False  # the last chunk (``more_body`` false) was received

    async def _chunk(self) -> bytes:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.complete = True
            raise ClientGone
        self.complete = not message.get("more_body", False)
        body: bytes = message.get("body", b"")
        return body

    async def read(self, cap: int) -> bytes:
        """The whole body; ``BodyProblem(413)`` as soon as it passes ``cap`` bytes."""
        chunks: list[bytes] = []
        size = 0
        while not self.complete:
            chunk = await self._chunk()
            size += len(chunk)
            if size > cap:
                raise BodyProblem(413, f"body {TOO_LARGE.format(cap=cap)}", "body")
            chunks.append(chunk)
        return b"".join(chunks)

    async def discard(self, max_bytes: int, timeout_s: float) -> bool:
        """Read and drop what is left; True when the body was read to its end."""
        read = 0
        try:
            async with asyncio.timeout(timeout_s):
                while not self.complete and read <= max_bytes:
                    read += len(await self._chunk())
        except (TimeoutError, ClientGone):
            return False
        return self.complete
