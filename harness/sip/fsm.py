"""Table-driven state machines shared by transactions, dialogs and subscriptions.

A machine is a plain mapping `state -> {event: next_state}` (h11 style). Keeping the
rules as data means one lookup enforces them, an illegal step names exactly what
was attempted, and the verifier can replay a capture through the same tables.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import SipError

Table = Mapping[str, Mapping[str, str]]


class ProtocolError(SipError):
    """An event the state machine does not allow in its current state.

    `status` is the SIP response a peer's violation would earn (e.g. 481, 500);
    callers decide whether the violation was local (raise) or remote (drop/answer).
    """

    def __init__(self, role: str, state: str, event: str, status: int = 500, detail: str = "") -> None:
        msg = f"{role}: event {event!r} not allowed in state {state!r}"
        super().__init__(f"{msg} ({detail})" if detail else msg)
        self.role = role
        self.state = state
        self.event = event
        self.status = status


def transition(table: Table, role: str, state: str, event: str, status: int = 500) -> str:
    """Next state for `event` in `state`, or ProtocolError naming role, state and event."""
    try:
        return table[state][event]
    except KeyError:
        raise ProtocolError(role, state, event, status) from None


def check_table(table: Table, terminal: str) -> None:
    """Every target state is a row, and every row but `terminal` has a way out (import-time sanity)."""
    for state, row in table.items():
        for event, target in row.items():
            if target not in table:
                raise AssertionError(f"{state!r} --{event}--> {target!r}: no such state")
        if state != terminal and not row:
            raise AssertionError(f"state {state!r} has no transitions")
