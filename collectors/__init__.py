"""Collectors: the contract, the registry, the network guard and the built-ins."""
