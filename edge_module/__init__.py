"""The edge side: decision core, Wasm guest, and the wasmtime host."""
