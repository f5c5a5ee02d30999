"""The command line: `collectq` (collect, api, worker, beat, up, keys, config check)."""
