"""The maintenance role: one leader across replicas runs the housekeeping jobs on intervals.

leader.py holds the leadership (leadership.py's Postgres session advisory lock), scheduler.py
runs the jobs while it leads, jobs.py has the jobs: expiry of pending tasks, the timeout sweep,
the retention purge, worker liveness and the spend ledger's purge (docs/operations.md, "The
maintenance role").
"""
