"""Generator families, one subpackage each (model code, checkpoint converter, pure ops, Serve adapter).

Each family is registered in pyproject.toml as a ``collage.families`` entry point (and, if it trains
models in a ``fit`` job, a ``collage.fit_tasks`` one); the platform finds them through
``service/families.py`` and imports a family's module only where its deployment is built.
"""
