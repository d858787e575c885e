"""Site data: schema and validation, virtual network, station ingestion, splits."""
