"""What each subtask does: the DAGs of stop and start (dag), one run of a subtask as a step sees it (run),
the steps forward (stop, start) and backward (rollback) behind one runner (lifecycle), a process stopped
or started through its dispatcher (process), the graceful preparation in SQL (freeze, cluster_sql), the
partial stops of one zone or server (partial; their majority check, majority; STOP/START in SQL,
service_sql). Steps
reach agents through dispatch and the engine through the StepSink of their run; they never import the
store, the engine or the API.
"""
