"""``python -m hydra_x.cli ...`` is ``hydra-x ...``."""

import sys

from hydra_x.cli import main

sys.exit(main())
