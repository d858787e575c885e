"""sptf-ray: Site-Specific Pedotransfer Functions learned on Ray."""

__version__ = "0.1.0"
