"""``python -m hostside``: the same command as ``hostside``."""

from hostside.cli import main

raise SystemExit(main())
