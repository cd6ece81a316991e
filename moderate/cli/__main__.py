"""`python -m moderate.cli`: the same as the `moderate` command."""

from . import main

main()
