"""STUN server and RTP relay driven by the rtpengine ng protocol (issue [5/5])."""
