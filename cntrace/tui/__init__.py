"""`cntrace tui`: the incident console (textual).

Built by ``cntrace.tui.app.build_app`` from an injected SnapshotSource and Tracer, so tests run
it on recorded snapshots; nothing outside this package imports textual.
"""
