"""What each subtask does: the DAGs (dag), one run of a subtask as a step sees it (run), the stop steps
(stop), the graceful preparation in SQL (freeze, cluster_sql). Steps reach agents through dispatch and
the engine through the StepSink of their run; they never import the store, the engine or the API.
"""
