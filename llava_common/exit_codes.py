"""Process exit codes: a named contract between the model process, the supervisor
and whatever restarts the supervisor (Docker, Kubernetes)."""

OK = 0
# Any uncaught crash exits 1 (Python's default): worth a restart.
CRASH = 1
# The process cannot start with this configuration: a bad setting, a missing or
# wrong checkpoint. Restarting will not help, so the supervisor must not loop on it
# (gunicorn's WORKER_BOOT_ERROR is 3 for the same reason).
BOOT_ERROR = 3
# The supervisor gave up on its child: the child exited with BOOT_ERROR, or failed
# to start SUPERVISOR_MAX_FAILED_STARTS times in a row, or could not be executed at
# all. The supervisor exits with it so that Docker / Kubernetes restart policies
# (with their own backoff) take over instead of a silent crash loop.
FATAL = 4

NAMES = {OK: "ok", CRASH: "crash", BOOT_ERROR: "boot error", FATAL: "fatal"}
