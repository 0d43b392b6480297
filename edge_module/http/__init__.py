"""The edge's HTTP surface: the API object, its OpenAPI description, outcome tokens, and the two
servers that serve it.
"""
