"""Distribution: the edge store both sides share (folder, S3), its signed manifest and the edge's
snapshot sync.
"""
