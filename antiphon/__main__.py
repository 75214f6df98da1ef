from __future__ import annotations

from antiphon.live.cli import main

raise SystemExit(main())
