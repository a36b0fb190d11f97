"""``python -m cntrace``."""

from cntrace.cli import main

raise SystemExit(main())
