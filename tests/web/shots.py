"""Screenshots of a dashboard page at the desktop (1280x800) and phone (390x844) sizes the
dashboard is made for, into /tmp/shots/<name>-<width>.png, for a person to look at."""
from __future__ import annotations

from pathlib import Path

SHOTS = Path("/tmp/shots")
SIZES = ((1280, 800), (390, 844))


def shoot(page, name: str) -> list[Path]:
    """Full-page screenshots of the page as it is, at each size; the viewport is put back."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size
    paths = []
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)  # charts and tables follow the new width
        page.mouse.move(0, 0)
        page.evaluate("window.scrollTo(0, 0)")  # a sticky header would land mid-image otherwise
        path = SHOTS / f"{name}-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        paths.append(path)
    if before:
        page.set_viewport_size(before)
    return paths
