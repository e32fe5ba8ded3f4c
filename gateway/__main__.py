"""``python -m gateway``: the ``welfare-gateway`` command."""

from gateway.entrypoints.cli import main

raise SystemExit(main())
