"""`python -m devtools.localmail`: the local mail server on its own."""

from devtools.localmail.cli import main

raise SystemExit(main())
