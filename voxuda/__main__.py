"""``python -m voxuda`` (also what ``torchrun -m voxuda`` runs)."""

from voxuda.cli import main

raise SystemExit(main())
