"""obstop: take OceanBase clusters down safely."""

__version__ = "0.1.0"
