"""report.html renders in headless Chromium with no broken images (Debian's `chromium`)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from simulation.report.run_report import write_report
from tests.conftest import require

# Appended to a copy of the page: after load, count images that failed to decode.
PROBE = ('<script>window.addEventListener("load",function(){var im=document.images,b=0;'
         'for(var i=0;i<im.length;i++){if(!im[i].complete||im[i].naturalWidth===0)b++;}'
         'var p=document.createElement("pre");p.id="probe";p.textContent="images="+im.length+'
         '" broken="+b+" height="+document.body.scrollHeight;document.body.appendChild(p);});</script>')
BROKEN_IMG = '<img alt="control" src="data:image/png;base64,AAAA">'


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with a throwaway profile and no network chatter."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    require(exe is not None, "chromium (headless browser for the report render test)",
            "apt-get install -y chromium (Debian's package; .ci/run installs it)")
    assert exe is not None
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def probe(tmp: Path, page: str, name: str) -> tuple[int, int, int]:
    """(images, broken images, page height) as the browser sees them."""
    path = tmp / name
    path.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    out = chromium(tmp, "--virtual-time-budget=5000", "--dump-dom", path.as_uri())
    found = re.search(r'<pre id="probe">images=(\d+) broken=(\d+) height=(\d+)</pre>', out.stdout)
    assert found, f"no probe output from chromium: {out.stderr[-2000:]}"
    images, broken, height = (int(g) for g in found.groups())
    return images, broken, height


@pytest.mark.slow
def test_report_renders_with_no_broken_images(report_run: Path, tmp_path: Path) -> None:
    page = write_report(report_run)[0].read_text()
    images, broken, height = probe(tmp_path, page, "report.html")
    assert images == 4 and broken == 0  # per-edge bars, origin trade-off, over time, training curves
    assert height > 3000  # every section laid out, not an empty page
    # The probe does catch a broken image (so 0 above means something).
    _, broken_control, _ = probe(tmp_path, page.replace("</main>", BROKEN_IMG + "</main>"), "control.html")
    assert broken_control == 1


@pytest.mark.slow
def test_report_screenshot_is_not_blank(report_run: Path, tmp_path: Path) -> None:
    html_path = write_report(report_run)[0]
    shot = tmp_path / "shot.png"
    out = chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={shot}", html_path.as_uri())
    assert shot.is_file(), out.stderr[-2000:]
    img = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert img.size == (1280, 2400)
    colors = img.getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 100  # text, tables and plots, not a blank canvas
