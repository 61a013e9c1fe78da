import sys

from camwatch.cli.main import main

sys.exit(main())
