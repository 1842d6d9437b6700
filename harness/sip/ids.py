"""Fresh identifiers: branch, tag, Call-ID.

Drawn from `secrets` rather than a clock so runs never collide and tests need no time source.
"""

import secrets

#: RFC 3261 §8.1.1.7: "The branch ID inserted by an element compliant with this
#: specification MUST always begin with the characters "z9hG4bK"."
MAGIC_COOKIE = "z9hG4bK"


def new_branch() -> str:
    """A Via branch unique in space and time (RFC 3261 §8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    """A From/To tag with at least 32 bits of randomness (RFC 3261 §19.3)."""
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    """A globally unique Call-ID `random@host` (RFC 3261 §8.1.1.4)."""
    return f"{secrets.token_hex(12)}@{host}"
