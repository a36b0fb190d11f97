"""Turning core results into text (rich) and versioned JSON."""
