"""``python -m orderwatch``: the same as the ``orderwatch`` command."""

import sys

from orderwatch._cli import main

sys.exit(main())
