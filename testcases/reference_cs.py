"""The harness's reference CS and MRFP in a process of their own, on 127.N.0.4 and 127.N.0.5: a CS
"under test" that a load run reaches only through the network, as it would a vendor's.

    python -m testcases.reference_cs --subnet N [--fault cs-omit-isfocus]

Prints "ready" once both listen; stops on SIGTERM or SIGINT (the tests stop it by its PID).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from harness.agents.focus import ConferenceServer
from harness.agents.mrfp import Mrfp
from harness.agents.topology import Topology


async def serve(subnet: int, faults: frozenset[str]) -> None:
    topology = Topology(subnet=subnet)
    mrfp = Mrfp(topology.ip("MRFP"), rtp_base_port=topology.rtp_base_port)
    cs = ConferenceServer(topology, mrfp, faults)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await mrfp.start()
        await cs.start()
        print("ready", flush=True)
        await stop.wait()
    finally:
        await cs.stop()
        await mrfp.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subnet", type=int, required=True)
    parser.add_argument("--fault", action="append", default=[])
    args = parser.parse_args()
    asyncio.run(serve(args.subnet, frozenset(args.fault)))


if __name__ == "__main__":
    main()
