"""What the console's panels show, computed from a Snapshot or a Path without textual.

One module per tab (containers, topology and its details pane, path, drops) plus the rule
identity they share. Rows come from the same discovery documents as ``cntrace ls`` and
``cntrace topo`` (so the console and the CLI never disagree); text is rich ``Text`` styled only
with bold, dim, reverse and the 16 ANSI colours, which textual maps onto the active light or
dark theme, and every colour cue also has a mark or a word so it survives NO_COLOR.
"""
