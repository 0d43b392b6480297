"""The Wasm runtime of the edge: the precompiled component and the pool of instances that run
decisions.
"""
