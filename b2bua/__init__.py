"""Back-to-back user agent: leg pairing, ACR selection, pattern routes (issue [4/5])."""
