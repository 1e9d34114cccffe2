"""Collage's own top-level name: ``python -m collage`` runs the ``collage`` command (``service/tools/cli.py``).

The code lives in ``service`` (the platform), ``schemas`` (the API contract) and ``deployments`` (the families); this
package holds only the ``-m`` entry, for environments where the console script is not on PATH (a venv not activated,
``python -m`` in a container)."""
