"""sipline: a carrier-grade SIP platform.

``sipline.sip`` is the sans-IO protocol core, ``sipline.net`` the asyncio
shell around it; config, metrics and the CLI sit beside them.
"""

__version__ = "0.1.0"
