"""Importing this module leaves a trace: tests check workers never import unregistered names."""

import os

MARK = os.environ.get("FAIRQUE_EVIL_MARK")
if MARK:
    with open(MARK, "w") as fh:
        fh.write("imported")


def run() -> None:
    if MARK:
        with open(MARK, "a") as fh:
            fh.write("ran")
