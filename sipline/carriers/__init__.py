"""What the ACR routes by and writes, as stored: carriers and their gateways, rate
decks (checked and loaded whole), routing profiles, DIDs, CDRs.

Shared by the ACR (which routes by them), the operator commands (``sipline
carrier``, ``rates``, ``did``, ``profile``, ``cdr``) and the portal, so each
change is made, checked and versioned by one implementation
(docs/design.md: a role imports ``sipline``, never another role).
"""
