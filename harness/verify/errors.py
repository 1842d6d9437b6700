"""The one error the verifier raises on purpose: the input cannot be judged at all."""


class BadInput(ValueError):
    """Unreadable, empty or SIP-less capture, or roles that cannot be inferred; the message is one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(" ".join(reason.split()))
        self.reason = str(self)
