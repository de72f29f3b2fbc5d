"""C{python -m portofcall_xmpp}: the command line (L{cli})."""

from .cli import main

main()
