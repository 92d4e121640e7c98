"""The generated parts of the docs. `make docs` writes them; tests/test_docs.py fails,
naming the page and `make docs`, when one no longer matches the code or the results.

- docs/reference/settings.md, metrics.md and codes.md are written whole from the code
  that defines them: the settings classes, the metric registries, and the modules of
  exit codes, answer statuses, error codes and supervisor states. A setting or a
  metric added in the code needs nothing but `make docs`.
- Hand-written pages hold islands, `<!-- include PATH -->` ... `<!-- end include -->`,
  refilled with the file at PATH (bench/results/*.md, chaos/RESULTS.md), so a measured
  figure in the docs is never copied by hand.

    .venv/bin/python -m docgen            # or: make docs
    .venv/bin/python -m docgen --check    # exit 1, naming the stale pages
"""
