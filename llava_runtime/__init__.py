"""The model runtime: loads LLaVA-NeXT with transformers and serves it over HTTP.

Read top-down: settings -> loader (demo_model) -> inputs -> engine -> server.
"""
