"""Sphinx tweaks for the course site.

The site shows notebooks exactly as the course runner executed them; it does not run code in the
browser. So the live-code extension's scripts (which Jupyter Book always loads, and which would
declare their configuration twice on every page) are left out.
"""

from sphinx.application import Sphinx


def setup(app: Sphinx) -> dict[str, object]:
    for listener in list(app.events.listeners.get("env-before-read-docs", [])):
        if getattr(listener.handler, "__qualname__", "") == "init_thebe_core":
            app.disconnect(listener.id)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
