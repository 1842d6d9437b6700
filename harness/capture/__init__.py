"""capture layer (see docs/interfaces.md)."""
