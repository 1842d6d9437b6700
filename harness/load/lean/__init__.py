"""The load mode's lean engine: UEs and a CS that stay on bytes end to end (README, Load).

Sans-IO (fed bytes and `now`, no sockets, no event loop):
- head.py          the fields of a received message the agents act on
- forms.py         what they send: Scapy-built templates, values patched in
- transactions.py  RFC 3261 UDP transactions: retransmissions, duplicates, 2xx until ACK
I/O and behaviour (asyncio):
- endpoint.py      one SIP address: the socket, one timer, a future per client transaction
- dialog.py        dialog state, request/response building, bounded waits
- ue.py, cs.py     the A.2.1 UEs and the conference server
- actions.py       the step table's actions where the lean agents differ from the reference ones
"""
