"""``python -m sluice.cli``: the ``sluice`` program."""

import sys

from sluice.cli import main

sys.exit(main())
