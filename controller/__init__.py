"""obstop controller: the OCP-compatible API, inventory, stop DAG, durable engine and dispatch."""
