"""TRADERAGENT's tables as the bot defines them (PostgreSQL enums, DECIMAL(20,8), naive UTC timestamps, the same
indexes), written as SQLAlchemy Core. The exporter only reads them; demo mode and tests create them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    DECIMAL,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()
MONEY: DECIMAL[Any] = DECIMAL(20, 8)

exchange_credentials = Table(
    "exchange_credentials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("exchange_id", String(50), nullable=False),
    Column("api_key_encrypted", Text, nullable=False),
    Column("api_secret_encrypted", Text, nullable=False),
    Column("password_encrypted", Text),
    Column("is_sandbox", Boolean, nullable=False, default=False),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

bots = Table(
    "bots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("credentials_id", Integer, ForeignKey("exchange_credentials.id"), nullable=False),
    Column("symbol", String(20), nullable=False),
    Column("strategy", Enum("grid", "dca", "hybrid", name="strategy_type"), nullable=False),
    Column("status", Enum("running", "paused", "stopped", "error", name="bot_status"), nullable=False),
    Column("config_version", Integer, nullable=False, default=1),
    Column("config_data", Text, nullable=False),
    Column("total_invested", MONEY, nullable=False, default=0),
    Column("current_profit", MONEY, nullable=False, default=0),
    Column("total_trades", Integer, nullable=False, default=0),
    Column("started_at", DateTime),
    Column("stopped_at", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("idx_bot_status", "status"),
    Index("idx_bot_symbol", "symbol"),
)

orders = Table(
    "orders",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("bot_id", Integer, ForeignKey("bots.id"), nullable=False),
    Column("exchange_order_id", String(100), nullable=False),
    Column("symbol", String(20), nullable=False),
    Column("order_type", Enum("limit", "market", name="order_type"), nullable=False),
    Column("side", Enum("buy", "sell", name="order_side"), nullable=False),
    Column("price", MONEY, nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("filled", MONEY, nullable=False, default=0),
    Column("status", Enum("open", "closed", "canceled", "expired", "rejected", name="order_status"), nullable=False),
    Column("grid_level", Integer),
    Column("is_dca", Boolean, nullable=False, default=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("filled_at", DateTime),
    Index("idx_order_bot_status", "bot_id", "status"),
    Index("idx_order_exchange_id", "exchange_order_id"),
    Index("idx_order_symbol", "symbol"),
)

trades = Table(
    "trades",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("bot_id", Integer, ForeignKey("bots.id"), nullable=False),
    Column("exchange_trade_id", String(100), nullable=False),
    Column("exchange_order_id", String(100), nullable=False),
    Column("symbol", String(20), nullable=False),
    Column("side", Enum("buy", "sell", name="trade_side"), nullable=False),
    Column("price", MONEY, nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("fee", MONEY, nullable=False, default=0),
    Column("fee_currency", String(10), nullable=False),
    Column("profit", MONEY),
    Column("executed_at", DateTime, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("idx_trade_bot", "bot_id"),
    Index("idx_trade_exchange_id", "exchange_trade_id"),
    Index("idx_trade_executed_at", "executed_at"),
)

grid_levels = Table(
    "grid_levels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bot_id", Integer, ForeignKey("bots.id"), nullable=False),
    Column("level", Integer, nullable=False),
    Column("price", MONEY, nullable=False),
    Column("buy_order_id", String(100)),
    Column("sell_order_id", String(100)),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("idx_grid_bot_level", "bot_id", "level", unique=True),
    Index("idx_grid_bot_active", "bot_id", "is_active"),
)

dca_history = Table(
    "dca_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bot_id", Integer, ForeignKey("bots.id"), nullable=False),
    Column("trigger_price", MONEY, nullable=False),
    Column("buy_price", MONEY, nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("total_cost", MONEY, nullable=False),
    Column("average_price", MONEY, nullable=False),
    Column("dca_step", Integer, nullable=False),
    Column("executed_at", DateTime, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("idx_dca_bot", "bot_id"),
    Index("idx_dca_executed_at", "executed_at"),
)

bot_logs = Table(
    "bot_logs",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("bot_id", Integer, ForeignKey("bots.id"), nullable=False),
    Column("level", Enum("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", name="log_level"), nullable=False),
    Column("message", Text, nullable=False),
    Column("context", Text),
    Column("created_at", DateTime, nullable=False),
    Index("idx_log_bot_level", "bot_id", "level"),
    Index("idx_log_created_at", "created_at"),
)
