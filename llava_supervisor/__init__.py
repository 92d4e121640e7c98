"""The supervisor: keeps the model process (or any command serving /health and
/health/live) running — spawn, health-poll, restart with backoff, graceful stop.
Roles: settings.py (knobs), states.py (the state machine), child.py (the process),
runner.py (the loop and signals), server.py (/status and /metrics)."""
