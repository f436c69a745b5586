"""lpmon: continuous accuracy monitoring for low-precision recommendation models."""

__version__ = "0.1.0"
