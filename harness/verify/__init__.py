"""verify layer (see docs/interfaces.md)."""
