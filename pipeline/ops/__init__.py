"""What ops see: measurements workers record, the cluster snapshot (``recast status``, the
board, ``/healthz``), history samples, Prometheus text, and a job's log in Redis.
"""
