# One image for the notifier and the bot exporter. Build: docker build -t traderagent-monitoring:0.1.0 .
# Notifier (default): docker run -p 127.0.0.1:9095:9095 traderagent-monitoring:0.1.0
#   with its config in the image (monitoring/notifier/notifier.yml): the log receiver; Telegram, Slack and email
#   when their variables are given (-e TELEGRAM_BOT_TOKEN=... -e TELEGRAM_CHAT_ID=...); auth with -e NOTIFIER_TOKEN.
# Exporter:           docker run ... traderagent-monitoring:0.1.0 bot-exporter --database-url ...
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY notifier ./notifier
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    NOTIFIER_CONFIG=/etc/notifier/notifier.yml \
    HEALTHCHECK_URL=http://127.0.0.1:9095/healthz
RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --home /var/lib/notifier app \
    && mkdir -p /var/lib/notifier /var/lib/bot-exporter /etc/notifier \
    && chown -R app:app /var/lib/notifier /var/lib/bot-exporter
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY monitoring/notifier/notifier.yml /etc/notifier/notifier.yml
USER 10001:10001
WORKDIR /var/lib/notifier
EXPOSE 9095 9100
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=2)"]
CMD ["notifier", "serve"]
