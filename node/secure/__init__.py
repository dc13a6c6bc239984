"""Secure rounds on the node side: the round config's section, the party's steps, the aggregate.

The cryptography is ``ledger.secagg``'s; this package joins it to the chain's bulletin board
(``FederationClient.post_round_message``, kinds ADVERTISE and REVEAL), the store and the round.
"""
