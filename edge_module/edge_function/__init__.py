"""The wasi:http/proxy edge function (#17): the decision core behind POST /v1/decide with the
state carried by the visitor in a signed token, and the snapshot baked in at build time."""
