"""Open the built course site in headless Chromium and check every page as a reader would see it.

Each page must load, carry its title, show every figure its notebook produced (each image loaded,
not broken), and raise no console error from the site's own files. Every request a page makes is
recorded; one for anything not on the site's own host (a font, a script or a badge from a CDN) is
blocked and fails the check, so the check runs offline and proves that the site needs no network.
On every page with formulas, MathJax must have typeset each of them: no raw TeX (``\\(``, ``\\[``,
``$$``) may be left in the page's text, and a page whose source has formulas must show them.
Screenshots of the introduction, of one notebook page with figures and of the first formula are kept.
"""

from __future__ import annotations

import functools
import http.server
import re
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


#: Schemes that are not network requests (inline images, generated objects).
LOCAL_SCHEMES = ("data:", "blob:", "about:")

#: The text of a page outside code blocks and typeset formulas, where raw TeX must not remain.
VISIBLE_TEXT_JS = """() => {
  const skip = "pre, code, script, style, textarea, mjx-container, .highlight";
  const walker = document.createTreeWalker(document.querySelector("main") || document.body, NodeFilter.SHOW_TEXT);
  const parts = [];
  while (walker.nextNode()) {
    const parent = walker.currentNode.parentElement;
    if (parent && !parent.closest(skip)) parts.push(walker.currentNode.textContent);
  }
  return parts.join("");
}"""
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$")

_DOLLAR_MATH = re.compile(r"\$\$.+?\$\$|(?<![\\$\w])\$[^\s$][^$\n]*?(?<![\s\\])\$(?![\w$])", re.S)
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def has_formulas(markdown: str) -> bool:
    """Whether MyST markdown contains maths (``$...$``, ``$$...$$`` or a ``{math}`` role/directive), outside code."""
    text = _CODE.sub("", markdown)
    return bool(_DOLLAR_MATH.search(text)) or "{math}" in text or "\\begin{" in text


@dataclass
class PageCheck:
    page: str
    title: str
    images: int
    expected_images: int
    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for, in order
    formulas: int = 0  # formulas MathJax typeset on the page


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


def expected_pages(html: Path, book: Path) -> dict[str, tuple[str, int, bool]]:
    """Each page to check: the title it must show, how many figures it must contain, whether it has formulas."""
    pages = {}
    for name, title in (
        ("intro", "Adapting language models to a domain"),
        ("report", "course report"),
        ("glossary", "Glossary"),
        ("references", "References"),
    ):
        source = book / f"{name}.md"
        pages[f"{name}.html"] = (title, 0, source.is_file() and has_formulas(source.read_text(encoding="utf-8")))
    for notebook in sorted((book / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(notebook, as_version=4)
        title = next(line[2:].strip() for line in nb.cells[0].source.splitlines() if line.startswith("# "))
        images = sum(
            1
            for cell in nb.cells
            if cell.cell_type == "code" and "remove-cell" not in cell.metadata.get("tags", [])
            for output in cell.outputs
            if any(mime in output.get("data", {}) for mime in ("image/png", "image/svg+xml", "image/jpeg"))
        )
        formulas = any(cell.cell_type == "markdown" and has_formulas(cell.source) for cell in nb.cells)
        pages[f"notebooks/{notebook.stem}.html"] = (title, images, formulas)
    missing = [page for page in pages if not (html / page).is_file()]
    if missing:
        raise FileNotFoundError(f"The built site lacks {missing}; build it first (python -m tools.book).")
    return pages


def check_site(html: Path, book: Path, screenshots: Path) -> list[PageCheck]:
    """Check every page of the site in ``html``; returns one result per page (see ``PageCheck.problems``)."""
    from playwright.sync_api import sync_playwright

    pages = expected_pages(html, book)
    screenshots.mkdir(parents=True, exist_ok=True)
    for stale in ("intro.png", "notebook.png", "formula.png"):  # each run takes its own
        (screenshots / stale).unlink(missing_ok=True)
    results = []
    with serve(html) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        requested: list[str] = []  # the current page's requests (pages are checked one at a time)

        def only_the_site(route) -> None:
            url = route.request.url
            requested.append(url)
            if url.startswith(f"{base}/") or url.startswith(LOCAL_SCHEMES):
                route.continue_()
            else:
                route.abort("blockedbyclient")

        context.route("**/*", only_the_site)
        for page_name, (title, expected, formulas_expected) in pages.items():
            page = context.new_page()
            problems: list[str] = []
            requested.clear()
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
            formulas = check_formulas(page, formulas_expected, problems)
            outside = [url for url in requested if not url.startswith((f"{base}/", *LOCAL_SCHEMES))]
            problems += [f"requested {url} from outside the site (blocked)" for url in dict.fromkeys(outside)]
            if page_name == "intro.html":
                page.screenshot(path=str(screenshots / "intro.png"))
            elif page_name.startswith("notebooks/") and not (screenshots / "notebook.png").exists() and expected:
                page.screenshot(path=str(screenshots / "notebook.png"))
            if formulas and not (screenshots / "formula.png").exists():
                page.locator("mjx-container").first.scroll_into_view_if_needed()
                page.screenshot(path=str(screenshots / "formula.png"))
            results.append(
                PageCheck(page_name, shown_title, sum(image_states), expected, problems, list(requested), formulas)
            )
            page.close()
        browser.close()
    return results


def check_formulas(page, expected: bool, problems: list[str], timeout_ms: int = 20_000) -> int:
    """Wait for MathJax to typeset the page; add a problem for raw TeX left in its text. Returns the formulas typeset."""
    math = page.locator(".math").count()  # Sphinx wraps every formula in a .math element
    if expected and not math:
        problems.append("its source has formulas, but the page shows none as maths")
    if math:
        # The page's deferred scripts have run by its load event; a page configuration alone is no MathJax.
        loaded = "() => Boolean(window.MathJax && typeof MathJax.typesetPromise === 'function')"
        if not page.evaluate(loaded):
            problems.append(f"MathJax did not load, so {math} formula(s) stay raw TeX")
            return 0
        try:
            page.evaluate("() => { MathJax.startup.promise.then(() => { window.__courseTypeset = true; }); }")
            page.wait_for_function("() => window.__courseTypeset === true", timeout=timeout_ms)
        except Exception as error:  # playwright's TimeoutError, or a MathJax error
            problems.append(f"MathJax did not finish typesetting {math} formula(s) ({type(error).__name__})")
            return 0
        untypeset = page.eval_on_selector_all(
            ".math", "els => els.filter(e => !e.querySelector('mjx-container')).length"
        )
        if untypeset:
            problems.append(f"{untypeset} of {math} formula(s) were not typeset")
    text = page.evaluate(VISIBLE_TEXT_JS)
    raw = [m.start() for m in RAW_TEX.finditer(text)]
    if raw:
        examples = "; ".join(repr(text[max(0, i - 20) : i + 20]) for i in raw[:3])
        problems.append(f"raw TeX left in the text {len(raw)} time(s), e.g. {examples}")
    return page.locator("mjx-container").count()


def main() -> int:

    from course_utils.paths import build_dir
    from tools.book import BOOK_DIR

    results = check_site(BOOK_DIR / "_build" / "html", BOOK_DIR, build_dir() / "screenshots")
    for result in results:
        mark = "✓" if not result.problems else "✗"
        print(
            f"{mark} {result.page}: {result.images}/{result.expected_images} figures, {result.formulas} formulas, "
            f"{len(result.requests)} requests  {'; '.join(result.problems)}"
        )
    return 0 if all(not r.problems for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
