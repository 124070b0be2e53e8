import sys

from kftune.cli import main

sys.exit(main())
