"""The DVC stages: thin scripts, run as ``python -m stages.<name>`` from the project root."""
