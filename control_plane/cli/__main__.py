"""`python -m control_plane.cli` runs `trigger-engine`."""

from . import main

main()
