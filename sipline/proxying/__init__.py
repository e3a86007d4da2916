"""What every SIP proxy role shares (RFC 3261 §16): the request rules, stateless
forwarding, dialog flows in Record-Route and the signature that makes them
believable (``signing``), what only our own nodes may say or reach
(``internal``), deadlines, the best-response choice and the stateful proxy's
handler (``stateful.StatefulProxy``).

The edge proxy (``proxy``) and the ACR (``acr``) build their routers on these;
the B2BUA (``b2bua``) uses the next-hop resolution and the deadlines. Nothing
here touches a socket.
"""
