"""`python -m tamx.pipeline` runs the tamx command line."""

from .cli import main

main(prog_name="tamx")
