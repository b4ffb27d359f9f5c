"""`python -m cluster ...` is the `loligo` command (how the launcher starts daemons)."""

import sys

from cluster.cli import main

sys.exit(main())
