"""Fault trials counted by the hundred (issue 13): `python -m reliability --trials N`.

Each trial brings up its own world (a Mosquitto on a free port, fake hosts with agents under their own
topic prefix, a controller on its own store), injects one fault at a random moment of a stop, drives the
task to its end (a retry where the scenario allows one) and checks the invariants. Nothing imports this
package; it imports obstop only.
"""
