"""The live control plane: API server, state store, node agents and executors."""
