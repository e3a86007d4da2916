"""rtpengine's ng control protocol: the bencode codec and a client.

``sipline.ng.bencode`` is shared by the relay (the ng server) and every role
that drives a relay; ``sipline.ng.exchanges`` matches replies to requests by
cookie, sans-IO; ``sipline.ng.client`` is its asyncio UDP shell.
"""
