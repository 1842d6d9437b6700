"""The run report in a real browser: headless Chromium (Debian's `chromium`) loads report.html from
a real captured run, runs its script, and we read back the DOM it built and a screenshot.

Run by `tox -e browser` (scripts/ensure-browser.sh installs chromium when root); a missing browser
fails these tests with the package to install, it never skips them.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import pytest

from testcases.data.make_a21_pcap import write_many
from testcases.unit.test_html_report import COLUMNS, STEP_IDS, Page, sip_messages

pytestmark = [pytest.mark.browser, pytest.mark.flow]

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--disable-extensions", "--mute-audio")
PASS_GREEN = (0x2E, 0x7D, 0x32)   # --pass in the page's CSS


def _greenish(pixel: tuple[int, ...]) -> bool:
    """The pass green, also where a thin anti-aliased line blends it with the white behind."""
    r, g, b = pixel[:3]
    return g > r + 30 and g > b + 30


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found: install the Debian package chromium (bash scripts/ensure-browser.sh)",
                    pytrace=False)
    return CHROMIUM


def browse(chromium: str, profile: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args, url], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def dump_dom(chromium: str, tmp_path: Path, url: str) -> Page:
    return Page(browse(chromium, tmp_path / "profile", url, "--dump-dom").stdout)


def screenshot(chromium: str, tmp_path: Path, url: str, size: str = "1500,1400") -> list[tuple[int, ...]]:
    png = tmp_path / "shot.png"
    browse(chromium, tmp_path / "profile", url, f"--screenshot={png}", f"--window-size={size}")
    return png_pixels(png.read_bytes())


def png_pixels(data: bytes) -> list[tuple[int, ...]]:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) into pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytearray] = []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(line)
        prev = line
    return [tuple(row[x * bpp:x * bpp + 3]) for row in rows for x in range(width)]


def test_png_decoder_sees_colours() -> None:
    """The blank-image check below must be able to fail: a one-colour PNG is one colour."""
    assert _greenish(PASS_GREEN) and not _greenish((255, 255, 255)) and not _greenish((0xC6, 0x28, 0x28))
    width, height = 4, 2
    raw = b"".join(b"\x00" + b"\xff\xff\xff" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    assert set(png_pixels(png)) == {(255, 255, 255)}


@pytest.fixture(scope="module")
def run(flow_runner):  # noqa: ANN001, ANN201 - conftest's RunOutcome
    outcome = flow_runner("browser-a2.1")
    assert outcome.report_path is not None, outcome.problems
    return outcome


def test_report_ladder_renders_in_chromium(run, chromium: str, tmp_path: Path) -> None:  # noqa: ANN001
    page = dump_dom(chromium, tmp_path, run.report_path.as_uri())
    assert ("html", {"lang": "en", "data-ready": "1"}) in page.elements   # the page script ran to its end
    msgs = page.groups("msg")
    sip = sip_messages(run.pcap)
    assert len(msgs) == len(sip) and sorted(int(g["data-frame"]) for g in msgs) == sorted(sip)
    assert [g["data-role"] for g in page.groups("col")] == COLUMNS
    on_arrows = {s for cls in ("msg", "rtp", "internal") for g in page.groups(cls) for s in g["data-step"].split()}
    assert on_arrows == set(STEP_IDS)
    assert page.groups("rtp")


def test_report_screenshot_is_not_blank(run, chromium: str, tmp_path: Path) -> None:  # noqa: ANN001
    """A window tall enough for the verdict table and the top of the ladder below it (headless
    Chromium paints a page scrolled by script only partly, so no #frame= here)."""
    width, height = 1500, 2600
    pixels = screenshot(chromium, tmp_path, run.report_path.as_uri(), f"{width},{height}")
    assert len(pixels) == width * height
    colours = Counter(pixels)
    background, most = colours.most_common(1)[0]
    assert len(colours) > 50, f"only {len(colours)} colours"
    assert most / len(pixels) < 0.9, f"{background} covers {most / len(pixels):.0%} of the screenshot"
    # The ladder is the lower part of the page: many of its pixel rows carry a pass-green arrow.
    lower = [pixels[y * width:(y + 1) * width] for y in range(height // 2, height)]
    green_rows = sum(1 for row in lower if sum(1 for p in row if _greenish(p)) >= 20)
    assert green_rows > 50, f"only {green_rows} pixel rows with a green arrow in the lower half"


def test_fragment_opens_the_message_details(run, chromium: str, tmp_path: Path) -> None:  # noqa: ANN001
    bye = max(f for f, (what, _) in sip_messages(run.pcap).items() if what == "BYE")
    text = browse(chromium, tmp_path / "profile", f"{run.report_path.as_uri()}#frame={bye}", "--dump-dom").stdout
    page = Page(text)
    selected = [a for tag, a in page.elements if tag == "g" and "sel" in a.get("class", "").split()]
    assert [a["data-frame"] for a in selected] == [str(bye)]
    assert "BYE sip:" in text and f"#{bye} " in text   # the panel holds the message and its header line
    assert "checks that used it" in text


def test_a_thousand_messages_stay_drawable(chromium: str, tmp_path: Path) -> None:
    """Ten interleaved instances (~1,000 SIP messages): one ladder each, every message drawn."""
    pcap = write_many(tmp_path / "x10.pcapng", 10, mutations={4: ("two-refer-to",)})
    out = tmp_path / "x10.html"
    proc = subprocess.run([sys.executable, "-m", "harness", "ladder", str(pcap), "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    page = dump_dom(chromium, tmp_path, out.as_uri())
    sip = sip_messages(pcap)
    assert len(sip) > 900 and len(page.groups("msg")) == len(sip)
    assert len([a for tag, a in page.elements if tag == "svg" and "ladder" in a.get("class", "")]) == 10
    assert {"fail", "pass"} <= {g["data-verdict"] for g in page.groups("msg")}
    pixels = screenshot(chromium, tmp_path, out.as_uri(), "1400,1000")
    assert len(set(pixels)) > 50
