"""traderagent-monitoring's notifier: Alertmanager's webhook target, fanning alerts out to Telegram, Slack and email."""

__version__ = "0.1.0"
