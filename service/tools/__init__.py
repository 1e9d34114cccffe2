"""Tooling around the service, not on its request path: the ``collage`` CLI (cli.py), the demo
(demo.py), and the generators of the Ray Serve config (serve_config.py) and of the Helm chart's
settings schema (helm_values.py).

Tools sit above both the platform and the families: they may import ``deployments`` (the CLI's
checkpoint converters and catalog builder do), while nothing in the platform (``service/*.py``)
imports ``service.tools`` (tests/test_layering.py).
"""
