"""`python -m odiseo` hands off to the command line."""

from __future__ import annotations

from odiseo.cli import main

raise SystemExit(main())
