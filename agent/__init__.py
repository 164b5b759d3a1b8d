"""obstop.agent: proves, stops and reports on observers, on its own host or over SSH.

    protocol.py      the controller <-> agent messages (stdlib and pydantic only)
    signing.py       Ed25519 signatures of commands
    identity.py      is this process the observer of this home path?
    procedure.py     probe and stop, written once for every executor
    mqtt_session.py  the MQTT session both daemons use
    tomlconf.py      config files for both daemons
    executors/       where the procedure runs: this host (psutil, /proc) or a host over SSH
    daemon/          the agent daemon, its journal and its config

Everything here but daemon/ is shared with the controller (obstop.controller imports it); daemon/ is
started only by the CLI. Nothing here imports obstop.controller, the CLI or the fakes.
"""
