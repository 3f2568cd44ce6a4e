"""medkb: a medical knowledge base that answers clinical questions with cited passages."""

__version__ = "0.1.0"
