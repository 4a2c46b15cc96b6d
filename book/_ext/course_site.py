"""Sphinx tweaks for the course site.

The site shows notebooks exactly as the course runner executed them; it does not run code in the
browser. So the live-code extension's scripts (which Jupyter Book always loads, and which would
declare their configuration twice on every page) are left out.

Each figure's alternative text is its title (``tools.book`` reads it from the cell's
matplotlib calls and stores one per figure in the cell's metadata), not the image's file path,
which is what a screen reader would otherwise read out.
"""

from docutils import nodes
from sphinx.application import Sphinx

FIGURE_TITLES = "course_figure_titles"  # the cell-metadata key tools.book writes


def _figure_alt_texts(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Give each output image of a notebook cell the title stored for it (images exist only after post-transforms)."""
    for cell in doctree.findall(nodes.container):
        if cell.get("nb_element") != "cell_code":
            continue
        titles = (cell.get("cell_metadata") or {}).get(FIGURE_TITLES) or []
        for image, title in zip(cell.findall(nodes.image), titles):  # noqa: B905 - fewer titles leave the rest
            image["alt"] = title


def setup(app: Sphinx) -> dict[str, object]:
    for listener in list(app.events.listeners.get("env-before-read-docs", [])):
        if getattr(listener.handler, "__qualname__", "") == "init_thebe_core":
            app.disconnect(listener.id)
    app.connect("doctree-resolved", _figure_alt_texts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
