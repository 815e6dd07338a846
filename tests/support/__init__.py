"""Helpers the tests share, by topic: plain functions, classes and constants (fixtures stay in the conftest.py files,
which call these). Nothing here ships in the installable packages."""
