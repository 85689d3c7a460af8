"""The contract between the web side (gateway, dashboard, metrics) and the workers.

Both sides import this package and nothing of each other's: the message formats
on Redis (wire.py), every Redis key and channel name (keys.py), the scripts that
enqueue and admit a request (scripts.py), and who is alive and serves what
(liveness.py). No Django imports: callers pass the prefix and the settings they read.
"""
