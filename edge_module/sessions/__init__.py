"""Where a visitor's session state lives between decisions: memory, LMDB or Redis, behind one seam.
"""
