"""Test-data generators (hand-made captures; nothing here comes from the harness agents)."""
