"""The benchmark scripts' own measuring parts (their figures are printed, never asserted): the
Python floor of benchmarks/vs_sipp.py plays every call of SIPp's scenario and counts its messages."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def vs_sipp() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vs_sipp", ROOT / "benchmarks" / "vs_sipp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("vs_sipp", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("calls", "concurrency"), [(1, 5), (50, 8)])
def test_python_floor_plays_six_messages_per_call(vs_sipp: ModuleType, calls: int, concurrency: int) -> None:
    assert asyncio.run(vs_sipp._floor_pair(calls, concurrency)) == 6 * calls


def test_python_floor_rate_counts_the_messages(vs_sipp: ModuleType) -> None:
    rate = vs_sipp.measure_python_floor(20, 4)
    assert rate.messages == 120 and rate.wall > 0 and rate.cpu >= 0


@pytest.mark.parametrize(("instances", "concurrency"), [(1, 1), (12, 5)])
def test_a21_floor_sends_every_message_through_both_forwarders(vs_sipp: ModuleType, instances: int,
                                                               concurrency: int) -> None:
    """A.2.1's 34 requests and responses per instance, each sent once by its UE or the CS and once by
    each forwarder: 102 datagrams an instance, none lost or repeated."""
    assert len(vs_sipp._A21) == 34
    rate = vs_sipp.measure_a21_floor(instances, concurrency)
    assert rate.messages == 102 * instances and rate.wall > 0
