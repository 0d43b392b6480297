"""The browser SDK (sdk/browser/src, plain JavaScript) and its build (sdk/build.py)."""
