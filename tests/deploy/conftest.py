"""tests/deploy is run by `make test-deploy` only (tests/deploy/run.sh), never by pytest."""

collect_ignore_glob = ["*"]
