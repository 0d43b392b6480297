"""One blueprint per resource of the control plane's HTTP API."""
