"""marshmallow schemas shared by the API, the tasks and the CLI."""

SCHEMA_VERSION = 1

__all__ = ["SCHEMA_VERSION"]
