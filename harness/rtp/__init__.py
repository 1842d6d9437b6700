"""rtp layer (see docs/interfaces.md)."""
