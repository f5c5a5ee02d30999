"""`python -m app.cli`: the `collectq` command."""

from app.cli.main import main

main()
