"""A tiny Django app whose tasks the worker tests run."""
