"""The engine: runs tasks durably (runner: forward, rollback, skip, cancel), commits their outcomes in
groups (writer), reconciles statuses with what the observers are seen to be when no task holds their
cluster (reconcile), and offers the operations the API asks for (service). It owns the store's writes
while a task runs; the steps it runs reach it only through their StepSink. Imported by the API (service
only) and the daemon.
"""
