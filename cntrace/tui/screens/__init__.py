"""The console's screens: the main tabs, the rules view, the key help."""
