"""Asyncio shell: transports, timers and the node that drives the SIP core."""
