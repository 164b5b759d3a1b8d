"""obstop.controller: the OCP-compatible API and the durable engine that carries tasks out.

    api/        routes only: reads from the store, changes through the engine's service
    engine/     runner (claims, runs, leases), writer (group commit), service (stop, retry, ...)
    steps/      what each subtask does; the DAGs; the freeze in SQL
    dispatch/   commands to agents over MQTT, or run agentless (locally, over SSH)
    store/      SQLite or PostgreSQL, one module per concern, migrations
    states/     the five state machines: the only source of legal moves
    config.py, inventory.py, auth.py, views.py, errors.py, daemon.py (the wiring)

Imports obstop.agent's shared parts (protocol, procedure, executors), never its daemon; imported only by
the CLI and the demo. The import rules are contracts in pyproject.toml, checked by `lint-imports`.
"""
