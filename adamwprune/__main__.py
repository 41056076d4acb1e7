import sys

from adamwprune.cli import main

sys.exit(main())
