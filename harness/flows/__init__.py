"""flows layer (see docs/interfaces.md)."""
