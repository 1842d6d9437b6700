"""agents layer (see docs/interfaces.md)."""
