"""Many nodes, one platform: node names, states and status, the admin endpoint's
token, the node registry, heartbeats and configuration pushed to every node.

``state``, ``report`` and ``token`` are pure logic (no I/O); ``member`` is what
every role runs beside its node (admin server, heartbeat, config feed);
``commands`` holds ``sipline status`` and ``sipline node ...``.
"""
