"""Errors the agents raise to the choreography: each says which role waited for what."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class FlowError(RuntimeError):
    """A peer answered, but not as the flow needs (e.g. 404 to the join INVITE).

    `status`/`reason` carry the SIP final response when there was one, so a transferee can put it
    in its final NOTIFY's sipfrag.
    """

    def __init__(self, message: str, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class FlowTimeout(FlowError, TimeoutError):
    """A bounded wait ran out, e.g. "UE-2 did not receive NOTIFY within 5 s"."""


async def bounded(awaitable: Awaitable[T], timeout: float, what: str) -> T:
    """Await with a bound; on expiry raise FlowTimeout("<what> within <timeout> s")."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise FlowTimeout(f"{what} within {timeout:g} s") from None
