import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def randomize(module: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    """Fresh models start as the identity (zero heads); give every parameter random values."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std)
    return module
