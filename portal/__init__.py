"""The web portal: operators' administration point and account users' dashboard.

A role like the others: it imports ``sipline``, never another role, and talks
to the rest through the same store, Redis and node admin endpoints as the
operator commands (docs/design.md "The portal").
"""
