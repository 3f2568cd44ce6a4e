"""Where the tests find the repository and ../shared (read in place; tests that need it skip when absent)."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CASES = SHARED / "cases"
