"""The metric contract of TRADERAGENT's monitoring, in one place, and the in-process API a bot can import.

Names, types, HELP texts and labels are fixed by the monitoring README's alert rules and dashboards. Counters are
named without `_total` here: prometheus-client appends it (so `bot_total_trades`, a count that is not a counter,
is a gauge).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series add nothing the rules use
Kind = Literal["gauge", "counter", "histogram"]
BOT = ("bot", "symbol", "strategy")
API = ("bot", "endpoint")
API_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric of the contract."""

    name: str  # as prometheus-client takes it (counters without _total)
    kind: Kind
    help: str
    labels: tuple[str, ...]

    @property
    def exposed(self) -> str:
        return f"{self.name}_total" if self.kind == "counter" else self.name


CONTRACT: tuple[MetricSpec, ...] = (
    MetricSpec("bot_portfolio_value_usdt", "gauge", "Invested capital plus profit, in USDT.", BOT),
    MetricSpec("bot_portfolio_return_percent", "gauge", "Profit over invested capital, in percent.", BOT),
    MetricSpec(
        "bot_portfolio_drawdown_percent", "gauge", "Fall of the portfolio value from its peak, in percent.", BOT
    ),
    MetricSpec("bot_total_trades", "gauge", "Trades executed.", BOT),
    MetricSpec("bot_winning_trades", "gauge", "Trades closed with a profit.", BOT),
    MetricSpec("bot_losing_trades", "gauge", "Trades closed with a loss.", BOT),
    MetricSpec("bot_win_rate_percent", "gauge", "Winning over closed trades, in percent.", BOT),
    MetricSpec("bot_open_orders", "gauge", "Orders open on the exchange.", BOT),
    MetricSpec("bot_total_orders", "counter", "Orders placed.", BOT),
    MetricSpec("bot_failed_orders", "counter", "Orders rejected or expired.", BOT),
    MetricSpec("bot_canceled_orders", "counter", "Orders canceled.", BOT),
    MetricSpec("bot_api_requests", "counter", "Exchange API calls.", API),
    MetricSpec("bot_api_errors", "counter", "Exchange API calls that failed.", API),
    MetricSpec("bot_api_request_duration_seconds", "histogram", "Exchange API call latency.", API),
    MetricSpec("bot_api_rate_limit_remaining", "gauge", "Calls left before the exchange's rate limit.", ("bot",)),
    MetricSpec("bot_grid_levels_active", "gauge", "Active grid levels.", BOT),
    MetricSpec("bot_dca_steps_active", "gauge", "DCA steps taken in the current position.", BOT),
    MetricSpec("bot_position_size_base", "gauge", "Open position in the base currency.", BOT),
    MetricSpec("bot_position_size_quote", "gauge", "Open position in the quote currency.", BOT),
    MetricSpec("bot_uptime_seconds", "gauge", "Seconds since the bot started.", BOT),
    MetricSpec("bot_errors", "counter", "Errors the bot logged (ERROR and CRITICAL).", BOT),
    MetricSpec("bot_last_trade_timestamp", "gauge", "Unix time of the newest trade.", BOT),
)
BY_NAME = {m.name: m for m in CONTRACT}

P = ParamSpec("P")
R = TypeVar("R")


class BotMetrics:
    """The contract as live prometheus-client objects, for a bot that exposes its own metrics in-process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._m: dict[str, Any] = {}
        for spec in CONTRACT:
            if spec.kind == "gauge":
                self._m[spec.name] = Gauge(spec.name, spec.help, spec.labels, registry=self.registry)
            elif spec.kind == "counter":
                self._m[spec.name] = Counter(spec.name, spec.help, spec.labels, registry=self.registry)
            else:
                self._m[spec.name] = Histogram(
                    spec.name, spec.help, spec.labels, buckets=API_LATENCY_BUCKETS, registry=self.registry
                )

    def record_trade(
        self, bot: str, symbol: str, strategy: str, *, profit: float | None, at: float | None = None
    ) -> None:
        labels = (bot, symbol, strategy)
        self._m["bot_total_trades"].labels(*labels).inc()
        if profit is not None and profit > 0:
            self._m["bot_winning_trades"].labels(*labels).inc()
        elif profit is not None and profit < 0:
            self._m["bot_losing_trades"].labels(*labels).inc()
        won = self._m["bot_winning_trades"].labels(*labels)._value.get()
        lost = self._m["bot_losing_trades"].labels(*labels)._value.get()
        if won + lost:
            self._m["bot_win_rate_percent"].labels(*labels).set(won / (won + lost) * 100)
        self._m["bot_last_trade_timestamp"].labels(*labels).set(at if at is not None else time.time())

    def record_order(
        self, bot: str, symbol: str, strategy: str, outcome: Literal["placed", "failed", "canceled"]
    ) -> None:
        labels = (bot, symbol, strategy)
        if outcome == "placed":
            self._m["bot_total_orders"].labels(*labels).inc()
        elif outcome == "failed":
            self._m["bot_failed_orders"].labels(*labels).inc()
        else:
            self._m["bot_canceled_orders"].labels(*labels).inc()

    def record_api_call(self, bot: str, endpoint: str, seconds: float, *, ok: bool) -> None:
        self._m["bot_api_requests"].labels(bot, endpoint).inc()
        self._m["bot_api_request_duration_seconds"].labels(bot, endpoint).observe(seconds)
        if not ok:
            self._m["bot_api_errors"].labels(bot, endpoint).inc()

    @contextmanager
    def time_api_call(self, bot: str, endpoint: str) -> Iterator[None]:
        """Times the block as one exchange call; an exception counts as a failed call and passes on."""
        started = time.perf_counter()
        ok = False
        try:
            yield
            ok = True
        finally:
            self.record_api_call(bot, endpoint, time.perf_counter() - started, ok=ok)

    def timed(
        self, bot: str, endpoint: str
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Coroutine[Any, Any, R]]]:
        """Decorator for an async exchange call."""

        def wrap(fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
            @functools.wraps(fn)
            async def inner(*args: P.args, **kwargs: P.kwargs) -> R:
                with self.time_api_call(bot, endpoint):
                    return await fn(*args, **kwargs)

            return inner

        return wrap
