"""report layer (see docs/interfaces.md)."""
