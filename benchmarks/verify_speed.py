"""How long `verify` takes on a load capture, against one plain tshark pass over the same file.

    python benchmarks/verify_speed.py [--instances 1000] [--runs 3] [--keep DIR]

Generates a capture of N interleaved A.2.1 instances (testcases/data/make_a21_pcap.build_many:
~96 SIP messages and ~200 RTP packets each), then, in the same run and alternating, times

* baseline: `tshark -r FILE -Y sip -T fields -e frame.number` (output discarded), and
* verify:   the whole CLI path in-process (`python -m harness verify FILE --json`, output discarded),

and prints both (best and median of the runs), their ratio, and the CPU seconds each used (less
sensitive to other load than wall time). The target is <= 1.5x (wall, best and median both). The
verify output is checked: the summary must say N instances, all passed (exit 1 otherwise). Not a
test: timings depend on the machine; run it on an idle one (`--max-load 0.5` waits, at most
`--wait` seconds, for the 1-minute load average to drop below 0.5 before each run; the load of every
run is printed either way).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.cli import main as harness_main  # noqa: E402
from testcases.data.make_a21_pcap import write_many  # noqa: E402


def cpu() -> float:
    """CPU seconds (user + system) of this process and its finished children so far."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def baseline(path: Path) -> tuple[float, float]:
    start, used = time.perf_counter(), cpu()
    subprocess.run(["tshark", "-r", str(path), "-Y", "sip", "-T", "fields", "-e", "frame.number"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=3600)
    return time.perf_counter() - start, cpu() - used


def verify(path: Path) -> tuple[float, float, dict]:
    out = io.StringIO()
    start, used = time.perf_counter(), cpu()
    with contextlib.redirect_stdout(out):
        code = harness_main(["verify", str(path), "--json"])
    elapsed, spent = time.perf_counter() - start, cpu() - used
    data = json.loads(out.getvalue())
    if code not in (0, 1):
        raise SystemExit(f"verify exited {code}")
    return elapsed, spent, data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="directory to write (and reuse) the capture in")
    parser.add_argument("--max-load", type=float, help="wait for the 1-minute load average to drop below this")
    parser.add_argument("--wait", type=float, default=600.0, help="longest wait for --max-load, seconds")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"a21-x{args.instances}.pcap"
        if not path.exists():
            start = time.perf_counter()
            write_many(path, args.instances)
            print(f"generated {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")
        base_times, verify_times, base_cpu, verify_cpu = [], [], [], []
        summary: dict = {}
        wrong = []
        for run in range(args.runs):
            load = idle(args.max_load, args.wait)
            wall, spent = baseline(path)
            base_times.append(wall)
            base_cpu.append(spent)
            elapsed, spent, data = verify(path)
            verify_times.append(elapsed)
            verify_cpu.append(spent)
            summary = data.get("summary", {"instances": 1, "verdict": data.get("verdict")})
            if (summary.get("instances"), summary.get("pass"), len(data.get("instances", []))) != \
                    (args.instances, args.instances, args.instances):
                wrong.append(run + 1)
            print(f"run {run + 1}: tshark {base_times[-1]:.2f} s ({base_cpu[-1]:.1f} s CPU), verify {elapsed:.2f} s "
                  f"({spent:.1f} s CPU), ratio {elapsed / base_times[-1]:.2f}, load before {load:.2f}", flush=True)
        print(f"summary: {summary.get('instances')} instances, verdict {summary.get('verdict')}, "
              f"pass {summary.get('pass')}, fail {summary.get('fail')}, inconclusive {summary.get('inconclusive')}")
        best = min(verify_times) / min(base_times)
        median = statistics.median(verify_times) / statistics.median(base_times)
        print(f"tshark -Y sip -T fields: best {min(base_times):.2f} s, median {statistics.median(base_times):.2f} s")
        print(f"verify:                  best {min(verify_times):.2f} s, median {statistics.median(verify_times):.2f} s")
        print(f"ratio verify / tshark:   best {best:.2f}x, median {median:.2f}x (target <= 1.5x)")
        print(f"CPU seconds (both cores): tshark best {min(base_cpu):.1f} / median {statistics.median(base_cpu):.1f}, "
              f"verify best {min(verify_cpu):.1f} / median {statistics.median(verify_cpu):.1f} "
              f"(ratio {min(verify_cpu) / min(base_cpu):.2f}x; verify runs tshark and Python side by side)")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"load average after the runs: {load:.2f} (wall ratios mean little above ~0.5)")
        if wrong:
            print(f"WRONG OUTPUT in run(s) {wrong}: the summary must say {args.instances} instances, all passed")
            return 1
        met = best <= 1.5 and median <= 1.5
        print(f"target <= 1.5x: {'met' if met else 'NOT met'} (best {best:.2f}x, median {median:.2f}x)")
    return 0


def idle(max_load: float | None, wait: float) -> float:
    """The 1-minute load average, after waiting (at most `wait` s) for it to drop below `max_load`."""
    if not hasattr(os, "getloadavg"):
        return float("nan")
    deadline = time.monotonic() + wait
    while max_load is not None and os.getloadavg()[0] >= max_load and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


if __name__ == "__main__":
    sys.exit(main())
