"""`python -m pushpull.cli ...` is the `pushpull` command."""

import sys

from pushpull.cli import main

sys.exit(main())
