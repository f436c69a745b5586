"""python -m lpmon.cli: the same as the lpmon command."""

import sys

from lpmon.cli import main

sys.exit(main())
