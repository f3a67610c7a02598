"""The TRADERAGENT bot's Prometheus exporter."""
