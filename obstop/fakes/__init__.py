"""Fakes that behave like the real thing, for trying obstop on one machine and for its tests: the fake
observer process (observer.py, stdlib only, so it starts fast) and its install (install.py), the fake
cluster answering OceanBase SQL (cluster.py, sql.py), fake hosts with agents (hosts.py: `obstop
fakehosts`), and loopback helpers (net.py). Used by the CLI, the demo, tests and benchmarks."""
