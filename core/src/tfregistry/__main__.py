"""``python -m tfregistry`` is ``tfr``."""

from tfregistry.cli import main

main()
