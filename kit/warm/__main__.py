import sys

from kit.warm.server import main

sys.exit(main())
