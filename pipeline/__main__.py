"""`python -m pipeline` runs the `tamx` command line."""

from .cli import main

main()
