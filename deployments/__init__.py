"""Generator families, one subpackage each (op declarations, model code, checkpoint converter, pure ops, Serve adapter).

Each family is registered in pyproject.toml as a ``collage.families`` entry point naming its op
declaration module, ``spec.py`` (and, if it trains models in a ``fit`` job, a ``collage.fit_tasks``
one); the platform finds them through ``service/families.py``, reads the torch-free declarations
for its op table, and imports a family's other modules only where its deployment is built.
"""
