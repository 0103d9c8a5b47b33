"""Fixtures shared by the test files."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


@pytest.fixture
def figures(monkeypatch) -> list[Figure]:
    """Every figure the code under test closes, in order, kept open long enough to be read."""
    closed: list[Figure] = []
    real_close = plt.close

    def close(fig: Figure | None = None) -> None:
        closed.append(fig)
        real_close(fig)

    monkeypatch.setattr(plt, "close", close)
    return closed
