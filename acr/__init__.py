"""Adaptive call router: carriers, rate decks, scoring, CDRs (issue [3/5])."""
