"""``python -m reinforce_jax``: the ``reinforce`` command."""

import sys

from reinforce_jax.app.cli import main

sys.exit(main())
