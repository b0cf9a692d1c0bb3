"""A page in a real browser: Debian's ``chromium`` through Playwright (``make browser``
installs it; ``DRIFTWIRE_CHROMIUM`` names another binary)."""

from __future__ import annotations

import io
import os
import shutil
from typing import Any

import numpy as np
from PIL import Image

#: the report's colours of the reference and the current window
REFERENCE_RGB, CURRENT_RGB = (0x4A, 0x6F, 0xA5), (0xE0, 0x7B, 0x39)


def ink(image: Image.Image, colour: tuple[int, int, int]) -> int:
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int((np.abs(pixels - np.array(colour)).sum(axis=2) < 40).sum())


def browse(url: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    binary = os.environ.get("DRIFTWIRE_CHROMIUM") or shutil.which("chromium")
    assert binary, "no chromium: run 'make browser' or set DRIFTWIRE_CHROMIUM"
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            response = page.goto(url, wait_until="load")
            assert response is not None
            boxes = page.eval_on_selector_all(
                "svg.plot",
                "els => els.map(e => { const r = e.getBoundingClientRect();"
                " return [r.x, r.y + window.scrollY, r.width, r.height]; })",
            )
            shot = Image.open(io.BytesIO(page.screenshot(full_page=True)))
            text = page.inner_text("body")
            assert requests == [url]  # the page asks for nothing else, not even a favicon
            return {"status": response.status, "errors": errors, "boxes": boxes, "shot": shot,
                    "text": text}  # fmt: skip
        finally:
            browser.close()
