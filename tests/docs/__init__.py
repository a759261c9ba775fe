"""Executable documentation: every fenced block of README.md, docs/*.md and
example_project/README.md is collected by Sybil (see the root conftest.py) and checked."""
