from __future__ import annotations

from antiphon.cli import main

raise SystemExit(main())
