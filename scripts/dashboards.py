"""Generates monitoring/grafana/dashboards/*.json: the six dashboards as code, so that every panel has the same
datasource variable, units and thresholds that match the alert rules. Run `make dashboards` after editing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "monitoring" / "grafana" / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
BOT = '{bot=~"$bot"}'


def variables(*, bot: bool = True) -> list[dict[str, Any]]:
    v: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "type": "datasource",
            "query": "prometheus",
            "label": "Data source",
            "current": {"text": "Prometheus", "value": "prometheus"},
        },
        {
            "name": "job",
            "type": "query",
            "datasource": DS,
            "query": "label_values(up, job)",
            "refresh": 2,
            "includeAll": True,
            "multi": True,
            "current": {"text": "All", "value": "$__all"},
        },
        {
            "name": "instance",
            "type": "query",
            "datasource": DS,
            "query": 'label_values(up{job=~"$job"}, instance)',
            "refresh": 2,
            "includeAll": True,
            "multi": True,
            "current": {"text": "All", "value": "$__all"},
        },
    ]
    if bot:
        v.append(
            {
                "name": "bot",
                "type": "query",
                "datasource": DS,
                "query": "label_values(bot_portfolio_value_usdt, bot)",
                "refresh": 2,
                "includeAll": True,
                "multi": True,
                "current": {"text": "All", "value": "$__all"},
            }
        )
    return v


def panel(
    title: str,
    exprs: list[str] | str,
    *,
    kind: str = "timeseries",
    unit: str = "short",
    thresholds: list[tuple[float, str]] | None = None,
    legend: str = "{{bot}}",
    w: int = 12,
    h: int = 8,
    bot_data: bool = False,
) -> dict[str, Any]:
    steps = [{"color": "green", "value": None}] + [{"color": c, "value": v} for v, c in (thresholds or [])]
    targets = [
        {"datasource": DS, "expr": e, "legendFormat": legend, "refId": chr(65 + i)}
        for i, e in enumerate([exprs] if isinstance(exprs, str) else exprs)
    ]
    p: dict[str, Any] = {
        "type": kind,
        "title": title,
        "datasource": DS,
        "targets": targets,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {},
    }
    if thresholds and kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"thresholdsStyle": {"mode": "line"}}
    if bot_data:
        p["description"] = "Shows data whenever the bot exporter is scraped."
        p["meta"] = {"expects_bot_data": True}
    return p


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    x = y = row_h = 0
    for i, p in enumerate(panels):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["gridPos"].update(x=x, y=y)
        p["id"] = i + 1
        x += w
        row_h = max(row_h, h)
    return panels


def dashboard(uid: str, title: str, panels: list[dict[str, Any]], *, bot: bool = True) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["traderagent"],
        "timezone": "browser",
        "schemaVersion": 38,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables(bot=bot)},
        "panels": layout(panels),
        "editable": True,
        "annotations": {
            "list": [
                {
                    "name": "Alerts",
                    "datasource": DS,
                    "enable": True,
                    "iconColor": "red",
                    "expr": 'ALERTS{alertstate="firing"}',
                    "titleFormat": "{{alertname}}",
                }
            ]
        },
    }


DASHBOARDS = [
    dashboard(
        "traderagent-overview",
        "Trading Bot Overview",
        [
            panel(
                "Portfolio value",
                f"sum(bot_portfolio_value_usdt{BOT})",
                kind="stat",
                unit="currencyUSD",
                w=6,
                h=4,
                legend="total",
                bot_data=True,
            ),
            panel("Return", f"bot_portfolio_return_percent{BOT}", kind="stat", unit="percent", w=6, h=4, bot_data=True),
            panel(
                "Drawdown",
                f"bot_portfolio_drawdown_percent{BOT}",
                kind="stat",
                unit="percent",
                w=6,
                h=4,
                thresholds=[(10, "orange"), (20, "red")],
                bot_data=True,
            ),
            panel("Open orders", f"sum(bot_open_orders{BOT})", kind="stat", w=6, h=4, legend="open", bot_data=True),
            panel("Portfolio value by bot", f"bot_portfolio_value_usdt{BOT}", unit="currencyUSD", bot_data=True),
            panel(
                "Drawdown by bot",
                f"bot_portfolio_drawdown_percent{BOT}",
                unit="percent",
                thresholds=[(10, "orange"), (20, "red")],
                bot_data=True,
            ),
            panel("Trades", f"bot_total_trades{BOT}", bot_data=True),
            panel("Win rate", f"bot_win_rate_percent{BOT}", unit="percent", bot_data=True),
            panel(
                "Errors (per 5 minutes)",
                f"increase(bot_errors_total{BOT}[5m])",
                thresholds=[(5, "orange")],
                bot_data=True,
            ),
            panel(
                "Order failures (share, 15 minutes)",
                f"increase(bot_failed_orders_total{BOT}[15m]) / clamp_min(increase(bot_total_orders_total{BOT}[15m]), 1)",
                unit="percentunit",
                thresholds=[(0.2, "orange")],
                bot_data=True,
            ),
            panel("Uptime", f"bot_uptime_seconds{BOT}", unit="s", bot_data=True),
            panel(
                "Since last trade",
                f"time() - bot_last_trade_timestamp{BOT}",
                unit="s",
                thresholds=[(3600, "blue")],
                bot_data=True,
            ),
        ],
    ),
    dashboard(
        "traderagent-performance",
        "Trading Performance",
        [
            panel("Equity curve", f"bot_portfolio_value_usdt{BOT}", unit="currencyUSD", w=24, bot_data=True),
            panel(
                "P/L by day",
                f"delta(bot_portfolio_value_usdt{BOT}[1d])",
                kind="barchart",
                unit="currencyUSD",
                w=8,
                bot_data=True,
            ),
            panel(
                "P/L by week",
                f"delta(bot_portfolio_value_usdt{BOT}[1w])",
                kind="barchart",
                unit="currencyUSD",
                w=8,
                bot_data=True,
            ),
            panel(
                "P/L by month",
                f"delta(bot_portfolio_value_usdt{BOT}[30d])",
                kind="barchart",
                unit="currencyUSD",
                w=8,
                bot_data=True,
            ),
            panel(
                "Trade distribution",
                [f"bot_winning_trades{BOT}", f"bot_losing_trades{BOT}"],
                kind="piechart",
                legend="{{bot}} {{__name__}}",
                bot_data=True,
            ),
            panel(
                "Drawdown",
                f"bot_portfolio_drawdown_percent{BOT}",
                unit="percent",
                thresholds=[(10, "orange"), (20, "red")],
                bot_data=True,
            ),
            panel(
                "Sharpe ratio (1 day, hourly returns)",
                # the slope of the last hour's return, sampled at every evaluation of the last day: shown from the
                # first minutes, and only where the returns vary (a zero deviation has no ratio)
                f"avg_over_time(deriv(bot_portfolio_return_percent{BOT}[1h])[1d:])"
                f" / (stddev_over_time(deriv(bot_portfolio_return_percent{BOT}[1h])[1d:]) > 0)",
            ),
            panel("Position (base)", f"bot_position_size_base{BOT}", bot_data=True),
            panel("Position (quote)", f"bot_position_size_quote{BOT}", unit="currencyUSD", bot_data=True),
            panel("Grid levels active", f"bot_grid_levels_active{BOT}", bot_data=True),
            panel("DCA steps in the position", f"bot_dca_steps_active{BOT}", bot_data=True),
        ],
    ),
    dashboard(
        "traderagent-system",
        "System Health",
        [
            panel(
                "Targets up",
                'up{job=~"$job", instance=~"$instance"}',
                legend="{{job}} {{instance}}",
                thresholds=[(0.5, "green")],
            ),
            panel(
                "CPU",
                '100 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle", instance=~"$instance"}[$__rate_interval])) * 100',
                unit="percent",
                thresholds=[(80, "orange")],
                legend="{{instance}}",
            ),
            panel(
                "Memory",
                '(1 - node_memory_MemAvailable_bytes{instance=~"$instance"} / node_memory_MemTotal_bytes{instance=~"$instance"}) * 100',
                unit="percent",
                thresholds=[(90, "red")],
                legend="{{instance}}",
            ),
            panel(
                "Free disk",
                'node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs", instance=~"$instance"} / node_filesystem_size_bytes * 100',
                unit="percent",
                legend="{{instance}} {{mountpoint}}",
            ),
            panel("Redis memory", "redis_memory_used_bytes", unit="bytes", legend="{{instance}}"),
            panel("Exporter sources", "bot_exporter_source_up", legend="{{source}}", thresholds=[(0.5, "green")]),
            panel(
                "Exporter scrape duration (p95)",
                "histogram_quantile(0.95, sum by (le) (rate(bot_exporter_scrape_duration_seconds_bucket[$__rate_interval])))",
                unit="s",
                legend="p95",
            ),
        ],
        bot=False,
    ),
    dashboard(
        "traderagent-database",
        "Database Performance",
        [
            panel("PostgreSQL up", "pg_up", kind="stat", legend="{{instance}}", thresholds=[(0.5, "green")], w=6, h=4),
            panel(
                "Bot database readable",
                'bot_exporter_source_up{source="database"}',
                kind="stat",
                w=6,
                h=4,
                legend="exporter",
            ),
            panel(
                "Connections in use",
                "sum by (instance) (pg_stat_activity_count) / on (instance) max by (instance) (pg_settings_max_connections) * 100",
                unit="percent",
                thresholds=[(80, "orange")],
                legend="{{instance}}",
            ),
            panel(
                "Transactions",
                "sum by (datname) (rate(pg_stat_database_xact_commit[$__rate_interval]))",
                unit="ops",
                legend="{{datname}}",
            ),
            panel("Database size", "pg_database_size_bytes", unit="bytes", legend="{{datname}}"),
            panel(
                "Exporter query time (p95)",
                "histogram_quantile(0.95, sum by (le) (rate(bot_exporter_scrape_duration_seconds_bucket[$__rate_interval])))",
                unit="s",
                legend="p95",
            ),
        ],
        bot=False,
    ),
    dashboard(
        "traderagent-api",
        "API Performance",
        [
            panel(
                "Requests",
                f"sum by (bot, endpoint) (rate(bot_api_requests_total{BOT}[$__rate_interval]))",
                unit="reqps",
                legend="{{bot}} {{endpoint}}",
            ),
            panel(
                "Errors",
                f"sum by (bot, endpoint) (rate(bot_api_errors_total{BOT}[$__rate_interval]))",
                unit="reqps",
                legend="{{bot}} {{endpoint}}",
            ),
            panel(
                "Latency p50 / p95 / p99",
                [
                    f"histogram_quantile({q}, sum by (le, endpoint) (rate(bot_api_request_duration_seconds_bucket{BOT}[$__rate_interval])))"
                    for q in ("0.5", "0.95", "0.99")
                ],
                unit="s",
                legend="{{endpoint}}",
                thresholds=[(2, "orange")],
            ),
            panel("Rate limit remaining", f"bot_api_rate_limit_remaining{BOT}", thresholds=[(10, "blue")]),
            panel(
                "Latency by endpoint (p95)",
                f"histogram_quantile(0.95, sum by (le, endpoint) (rate(bot_api_request_duration_seconds_bucket{BOT}[$__rate_interval])))",
                kind="bargauge",
                unit="s",
                legend="{{endpoint}}",
            ),
        ],
    ),
    dashboard(
        "traderagent-notifier",
        "Notifier",
        [
            panel(
                "Webhooks",
                "sum by (outcome) (rate(notifier_webhooks_received_total[$__rate_interval]))",
                unit="reqps",
                legend="{{outcome}}",
            ),
            panel(
                "Alerts received",
                "sum by (severity, status) (rate(notifier_alerts_received_total[$__rate_interval]))",
                legend="{{severity}} {{status}}",
            ),
            panel(
                "Deliveries",
                "sum by (channel, outcome) (rate(notifier_deliveries_total[$__rate_interval]))",
                legend="{{channel}} {{outcome}}",
            ),
            panel(
                "Dead in 15 minutes",
                'sum by (receiver) (increase(notifier_deliveries_total{outcome="dead"}[15m]))',
                kind="stat",
                thresholds=[(1, "red")],
                legend="{{receiver}}",
            ),
            panel("Outbox", "notifier_outbox_pending", legend="{{channel}}"),
            panel(
                "Oldest waiting message",
                "notifier_outbox_oldest_pending_seconds",
                unit="s",
                thresholds=[(600, "orange")],
                legend="oldest",
            ),
            panel(
                "Delivery time (p95)",
                "histogram_quantile(0.95, sum by (le, channel) (rate(notifier_delivery_duration_seconds_bucket[$__rate_interval])))",
                unit="s",
                legend="{{channel}}",
            ),
            panel(
                "Intake latency (p99)",
                "histogram_quantile(0.99, sum by (le) (rate(notifier_intake_duration_seconds_bucket[$__rate_interval])))",
                unit="s",
                legend="p99",
            ),
            panel(
                "Suppressed",
                "sum by (reason) (rate(notifier_notifications_suppressed_total[$__rate_interval]))",
                legend="{{reason}}",
            ),
        ],
        bot=False,
    ),
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for d in DASHBOARDS:
        (OUT / f"{d['uid']}.json").write_text(json.dumps(d, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(DASHBOARDS)} dashboards to {OUT}")


if __name__ == "__main__":
    main()
