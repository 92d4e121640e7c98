"""Process exit codes: a named contract between the model process, the supervisor
and whatever restarts the supervisor (Docker, Kubernetes). MEANINGS is the table of
docs/reference/codes.md (`make docs`)."""

OK = 0
CRASH = 1
BOOT_ERROR = 3
FATAL = 4

NAMES = {OK: "ok", CRASH: "crash", BOOT_ERROR: "boot error", FATAL: "fatal"}
MEANINGS = {
    OK: "Stopped on request (SIGTERM, SIGINT)",
    # Python's own exit code for an uncaught exception.
    CRASH: "Crashed (the model process: also a port that is still taken): worth a restart",
    # gunicorn's WORKER_BOOT_ERROR is 3 for the same reason: restarting cannot help,
    # so the supervisor must not loop on it.
    BOOT_ERROR: "Cannot start with this configuration: a bad setting (every process; one message names every bad "
                "variable), a missing or wrong checkpoint (model process), SUPERVISOR_PORT cannot be bound "
                "(supervisor). Do not restart",
    # The supervisor exits with it so that Docker / Kubernetes restart policies (with
    # their own backoff) take over instead of a silent crash loop.
    FATAL: "The supervisor gave up on its child: the child exited with 3 (BOOT_ERROR), failed "
           "SUPERVISOR_MAX_FAILED_STARTS times in a row, or could not be executed",
}
