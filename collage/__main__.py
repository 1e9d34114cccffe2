"""``python -m collage``: the same command line as the ``collage`` console script of pyproject's [project.scripts]."""

import sys

from service.tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
