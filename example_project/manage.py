#!/usr/bin/env python3
"""Django's command-line utility for the fairque_django example project."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    # From a source checkout the package may not be installed: fall back to the repository's copy
    # (appended, so an installed fairque_django still wins).
    sys.path.append(str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
