"""The decision core and the rule language, run on both engines (native and the Wasm component)."""
