"""Open the built course site in headless Chromium and check every page as a reader would see it.

Each page must load, carry its title, show every figure its notebook produced (each image loaded,
not broken), and raise no console error from the site's own files. Requests that leave the machine
(fonts or scripts from a CDN) are blocked, so the check runs offline and says only what the site
itself does. Screenshots of the introduction and of one notebook page are kept.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class PageCheck:
    page: str
    title: str
    images: int
    expected_images: int
    problems: list[str] = field(default_factory=list)


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on a free localhost port for the duration of the block; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("No Chromium found. Install it (Debian: apt-get install chromium) to check the site.")


def expected_pages(html: Path, book: Path) -> dict[str, tuple[str, int]]:
    """Each page to check, with the title it must show and how many figures it must contain."""
    pages = {"intro.html": ("Adapting language models to a domain", 0)}
    for name, title in (
        ("report.html", "course report"),
        ("glossary.html", "Glossary"),
        ("references.html", "References"),
    ):
        pages[name] = (title, 0)
    for notebook in sorted((book / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(notebook, as_version=4)
        title = next(line[2:].strip() for line in nb.cells[0].source.splitlines() if line.startswith("# "))
        images = sum(
            1
            for cell in nb.cells
            if cell.cell_type == "code"
            for output in cell.outputs
            if any(mime in output.get("data", {}) for mime in ("image/png", "image/svg+xml", "image/jpeg"))
        )
        pages[f"notebooks/{notebook.stem}.html"] = (title, images)
    missing = [page for page in pages if not (html / page).is_file()]
    if missing:
        raise FileNotFoundError(f"The built site lacks {missing}; build it first (python -m course_utils.book).")
    return pages


def check_site(html: Path, book: Path, screenshots: Path) -> list[PageCheck]:
    """Check every page of the site in ``html``; returns one result per page (see ``PageCheck.problems``)."""
    from playwright.sync_api import sync_playwright

    pages = expected_pages(html, book)
    screenshots.mkdir(parents=True, exist_ok=True)
    results = []
    with serve(html) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base) else route.abort())
        for page_name, (title, expected) in pages.items():
            page = context.new_page()
            problems: list[str] = []
            page.on(
                "console",
                lambda msg, problems=problems: (
                    problems.append(f"console error: {msg.text} ({msg.location.get('url')})")
                    if msg.type == "error" and str(msg.location.get("url", "")).startswith(base)
                    else None
                ),
            )
            page.on("pageerror", lambda err, problems=problems: problems.append(f"script error: {err}"))
            page.on(
                "response",
                lambda r, problems=problems: (
                    problems.append(f"HTTP {r.status} for {r.url}")
                    if r.url.startswith(base) and r.status >= 400
                    else None
                ),
            )
            response = page.goto(f"{base}/{page_name}", wait_until="load")
            if response is None or response.status != 200:
                problems.append(f"page did not load (status {response.status if response else 'none'})")
            shown_title = page.title()
            if title.lower() not in shown_title.lower():
                problems.append(f"title {shown_title!r} lacks {title!r}")
            image_states = page.eval_on_selector_all(  # the site's own images; badges from elsewhere are blocked
                "main img",
                "(imgs, base) => imgs.filter(i => i.src.startsWith(base)).map(i => i.complete && i.naturalWidth > 0)",
                base,
            )
            if sum(image_states) < expected:
                problems.append(f"shows {sum(image_states)} loaded figures, expected at least {expected}")
            if not all(image_states):
                problems.append(f"{image_states.count(False)} image(s) failed to load")
            if page_name.startswith("notebooks/"):
                colab = page.locator(
                    f'a[href$="/notebooks/{Path(page_name).stem}.ipynb"][href*="colab.research.google.com"]'
                )
                if colab.count() == 0:
                    problems.append("no 'Open in Colab' link to this notebook")
            if page_name == "intro.html":
                page.screenshot(path=str(screenshots / "intro.png"))
            elif page_name.startswith("notebooks/") and not (screenshots / "notebook.png").exists() and expected:
                page.screenshot(path=str(screenshots / "notebook.png"))
            results.append(PageCheck(page_name, shown_title, sum(image_states), expected, problems))
            page.close()
        browser.close()
    return results


def main() -> int:

    from course_utils.book import BOOK_DIR
    from course_utils.paths import build_dir

    results = check_site(BOOK_DIR / "_build" / "html", BOOK_DIR, build_dir() / "screenshots")
    for result in results:
        mark = "✓" if not result.problems else "✗"
        print(f"{mark} {result.page}: {result.images}/{result.expected_images} figures  {'; '.join(result.problems)}")
    return 0 if all(not r.problems for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
