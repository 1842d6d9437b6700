"""The load mode's lean engine: UEs and a CS that stay on bytes end to end (README, Load).

Sans-IO (fed bytes and `now`, no sockets, no event loop):
- head.py          the fields of a received message the agents act on
- forms.py         what they send: Scapy-built templates, values patched in
- transactions.py  RFC 3261 UDP transactions: retransmissions, duplicates, 2xx until ACK
Waiting without a task per wait:
- signal.py        Signal (a value that arrives once), Clock (every deadline under one loop
                   timer), Play (a generator flow resumed in the call that sets its Signal)
I/O and behaviour (asyncio sockets, flows on Signals):
- endpoint.py      one SIP address: the socket, its deadlines on the Clock, a Signal per client transaction
- dialog.py        dialog state, request/response building, Signals by key
- ue.py, cs.py     the A.2.1 UEs and the conference server
- conduct.py       the step table's choreography for them (play.py's actions as flows)
"""
