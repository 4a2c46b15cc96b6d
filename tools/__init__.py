"""Tools that build and check the course site; not part of the package learners import."""
