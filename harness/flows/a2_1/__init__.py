"""3GPP TS 24.605 A.2.1: invite other user to 3PTY CONF by sending REFER request."""
