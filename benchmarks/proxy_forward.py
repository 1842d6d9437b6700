"""CPU per datagram of the stateless proxy: the byte-patching fast path against the reference path.

    python benchmarks/proxy_forward.py [--conferences 5] [--subnet 231] [--passes 30]

Records every datagram the two proxies (P-CSCF, S-CSCF) receive in a real lean A.2.1 load run
(N conferences, no media), checks the fast path takes each of them and forwards exactly what the
reference path does, then times, in the same process,

* fast, cold:  `FastPath.forward` over the recorded traffic with fresh proxies and emptied caches
               (the fast path's shared ones, harness.sip.headers' lru_caches) every pass, as a load
               run sees them: every dialog brings new branches, tags, Call-IDs;
* fast, warm:  the same with the proxies kept across passes (retransmission-like: every cache hits);
* reference:   `Proxy.reference` (parse, route, serialise through the Scapy layer), cold as above,

and prints microseconds per datagram (best of the passes, and median) and reference / fast. Not a
test: timings depend on the machine; run it on an idle one.

Typical figures (2-core VM, best of the passes): fast, cold ~13 us (was ~20 before the common
forms were read without the general parsers and the per-transaction caches were dropped); fast,
warm ~9 us; reference ~120-150 us. Cold here counts each pass's warm-up (fresh proxies, every
shape met anew: a tenth of these 310 datagrams); over a 100-conference recording it is ~11 us,
and inside a 200-instance load run (`FastPath.forward` timed in place) ~22-28 us (was ~42-44).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.agents.proxy import Proxy, clear_caches  # noqa: E402
from harness.load.runner import LoadRun  # noqa: E402
from harness.net.udp import Addr  # noqa: E402
from harness.sip import headers  # noqa: E402

Record = tuple[str, str, int, bytes, Addr]  # role, ip, port, datagram, source


def record(subnet: int, conferences: int) -> list[Record]:
    """Every datagram the proxies receive in one load run, in arrival order."""
    seen: list[Record] = []
    original = Proxy._datagram

    def recording(self: Proxy, data: bytes, addr: Addr) -> None:
        seen.append((self.role, self.ip, self.port, data, addr))
        original(self, data, addr)

    Proxy._datagram = recording  # type: ignore[method-assign]
    try:
        records = asyncio.run(LoadRun(subnet, conferences, min(conferences, 4), media_seconds=0.0,
                                      media=False).run())
    finally:
        Proxy._datagram = original  # type: ignore[method-assign]
    failed = [r.error for r in records if not r.ok]
    if failed:
        raise SystemExit(f"load run failed: {failed[0]}")
    return seen


def proxies(traffic: list[Record]) -> dict[str, Proxy]:
    return {role: Proxy(role, ip, port) for role, ip, port, _, _ in traffic}


def check(traffic: list[Record]) -> None:
    """The fast path takes every datagram and forwards the reference path's bytes to its address."""
    fast, ref = proxies(traffic), proxies(traffic)
    for role, _, _, data, addr in traffic:
        got = fast[role].fast.forward(data, addr)
        if got is None:
            raise SystemExit(f"fast path declined: {data[:60]!r}")
        if got != ref[role].reference(data, addr):
            raise SystemExit(f"fast path differs from the reference path: {data[:60]!r}")


def clear_parse_caches() -> None:
    """Empty the fast path's shared caches and the lru_caches of the header parsers."""
    clear_caches()
    for obj in vars(headers).values():
        members = [getattr(v, "__func__", v) for v in vars(obj).values()] if isinstance(obj, type) else []
        for target in (obj, *members):
            clear = getattr(target, "cache_clear", None)
            if callable(clear):
                clear()


def timed(traffic: list[Record], passes: int, step: Callable[[Proxy], Callable[[bytes, Addr], object]],
          fresh: bool) -> list[float]:
    """Microseconds per datagram of each pass."""
    samples: list[float] = []
    kept = proxies(traffic)
    for _ in range(passes):
        agents = proxies(traffic) if fresh else kept
        if fresh:
            clear_parse_caches()
        calls = [(step(agents[role]), data, addr) for role, _, _, data, addr in traffic]
        gc.collect()
        began = time.perf_counter()
        for call, data, addr in calls:
            call(data, addr)
        samples.append((time.perf_counter() - began) / len(calls) * 1e6)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conferences", type=int, default=5)
    parser.add_argument("--subnet", type=int, default=231, help="the 127.N subnet of the load run")
    parser.add_argument("--passes", type=int, default=30, help="timed passes of the fast path")
    args = parser.parse_args(argv)
    traffic = record(args.subnet, args.conferences)
    check(traffic)
    print(f"{len(traffic)} datagrams ({args.conferences} A.2.1 conferences), all taken by the fast path, "
          "byte-equal with the reference path")
    results = {
        "fast, cold": timed(traffic, args.passes, lambda p: p.fast.forward, fresh=True),
        "fast, warm": timed(traffic, args.passes, lambda p: p.fast.forward, fresh=False),
        "reference": timed(traffic, max(3, args.passes // 10), lambda p: p.reference, fresh=True),
    }
    for name, samples in results.items():
        print(f"{name:<11} {min(samples):7.1f} us/datagram best, {statistics.median(samples):7.1f} median")
    ref = min(results["reference"])
    for name in ("fast, cold", "fast, warm"):
        print(f"reference / {name}: {ref / min(results[name]):.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
