"""Everything that reads the live system into a Snapshot (or a recorded file back into one)."""
