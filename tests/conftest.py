from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def mnist_weights():
    """The reference package's trained MNIST weights; skips where ../shared is absent."""
    path = SHARED / "fixtures" / "network_mnist_1.npz"
    if not path.is_file():
        pytest.skip(f"fixture {path} not available")
    return path
