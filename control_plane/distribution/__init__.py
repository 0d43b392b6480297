"""Getting snapshots to edges: publishing and rollback, signing keys, the pack registry and the
fleet view.
"""
