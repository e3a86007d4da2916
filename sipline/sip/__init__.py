"""Sans-IO SIP core: bytes in, objects out; events in, actions out.

Nothing in this package touches sockets or the event loop (docs/design.md).
"""
