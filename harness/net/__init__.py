"""net layer (see docs/interfaces.md)."""
