"""RFC 3261 §17 timer values (Table 4), computed from T1/T2/T4 and the transport.

Durations only: the transaction layer turns them into deadlines by adding the
`now` it was given, so nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

T1 = 0.5  # RTT estimate (§17.1.1.1)
T2 = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # maximum time a message remains in the network
TRYING_DELAY = 0.2  # §17.2.1: send 100 Trying if the TU has not answered within 200 ms
TIMER_D_UNRELIABLE = 32.0  # §17.1.1.2: "at least 32 seconds for unreliable transports"


@dataclass(frozen=True, slots=True)
class Timers:
    """Timer durations for one transport; `reliable` zeroes the wait-for-retransmission timers."""

    t1: float = T1
    t2: float = T2
    t4: float = T4
    reliable: bool = False

    def __post_init__(self) -> None:
        if not (0 < self.t1 <= self.t2):
            raise ValueError(f"need 0 < T1 <= T2, got T1={self.t1} T2={self.t2}")
        if self.t4 <= 0:
            raise ValueError(f"need T4 > 0, got {self.t4}")

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H, J (unreliable), L and M, and the 2xx retransmission limit."""
        return 64 * self.t1

    # Client INVITE (§17.1.1.2) -------------------------------------------------
    def a(self, n: int) -> float | None:
        """Timer A before the n-th retransmission (n=0 first): T1*2^n, never capped."""
        return None if self.reliable else self.t1 * 2**n

    @property
    def b(self) -> float:
        return self.timeout

    @property
    def d(self) -> float:
        return 0.0 if self.reliable else max(TIMER_D_UNRELIABLE, self.timeout)

    # Client non-INVITE (§17.1.2.2) ---------------------------------------------
    def e(self, n: int) -> float | None:
        """Timer E in Trying: min(T1*2^n, T2). In Proceeding it is always T2 (`e_proceeding`)."""
        return None if self.reliable else min(self.t1 * 2**n, self.t2)

    @property
    def e_proceeding(self) -> float | None:
        return None if self.reliable else self.t2

    @property
    def f(self) -> float:
        return self.timeout

    @property
    def k(self) -> float:
        return 0.0 if self.reliable else self.t4

    # Server INVITE (§17.2.1) ---------------------------------------------------
    def g(self, n: int) -> float | None:
        """Timer G: min(T1*2^n, T2); also the UAS core's 2xx retransmission interval (§13.3.1.4)."""
        return None if self.reliable else min(self.t1 * 2**n, self.t2)

    def retransmit_2xx(self, n: int) -> float:
        """§13.3.1.4: the 2xx is retransmitted end to end, whatever the first hop's transport."""
        return min(self.t1 * 2**n, self.t2)

    @property
    def h(self) -> float:
        return self.timeout

    @property
    def i(self) -> float:
        return 0.0 if self.reliable else self.t4

    # Server non-INVITE (§17.2.2) -----------------------------------------------
    @property
    def j(self) -> float:
        return 0.0 if self.reliable else self.timeout

    # RFC 6026 Accepted states --------------------------------------------------
    @property
    def l(self) -> float:  # noqa: E743 - the RFC's name
        return self.timeout

    @property
    def m(self) -> float:
        return self.timeout
