"""Helpers for the course *Adapting language models to a domain*.

Each module holds one piece that notebooks share; a notebook teaches the piece
step by step and then uses the module's version, so there is one source of truth.
"""

__version__ = "0.1.0"
