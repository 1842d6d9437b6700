"""sip layer (see docs/interfaces.md)."""
