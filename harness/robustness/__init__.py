"""Robustness: RFC 4475 torture messages and seeded mutations of A.2.1 messages against a target,
with an OPTIONS liveness probe after each case (see session.py). Imported lazily by the CLI."""
