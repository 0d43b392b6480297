"""The control plane: rule packs, authoring tools, publishing, the API and CLI, learning."""
