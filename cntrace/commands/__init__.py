"""Sub-commands of the CLI (the top layer): parse arguments, call the core, render."""
