"""Pieces shared by every process role: settings machinery, exit codes, logging."""
