"""`python -m sextant.cli` runs the command line (same as the `sextant` console script)."""

from sextant.cli.main import main

main()
