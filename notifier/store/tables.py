"""The notifier's tables (SQLAlchemy Core); one schema for SQLite and PostgreSQL. Times are unix seconds (double).

notifications  every webhook accepted, as received (raw JSON; large ones compressed), one per distinct notification
intake_keys    redelivery keys with their expiry: what makes an HA peer's copy a duplicate, across replicas
               (PostgreSQL; on SQLite the intake keeps them in memory, from notifications: see RecentKeys)
deliveries     the outbox: one row per message to one target; at most one `pending` per (target, group)
threads        the provider's reference of a group's first message per target (reply / thread / In-Reply-To)
group_state    per (receiver, group): the alerts last committed for delivery, for per-receiver dedup
digest_items   alerts collected for a receiver's next email digest, one per firing episode
digest_runs    the digest ticks taken, one row per (receiver, tick): exactly one digest per tick
rate_slots     messages sent per rate-limit bucket, so that several replicas share one provider limit
rate_buckets   per refilling rate-limit bucket, when it is full again (the limits that refill one message at a time)
alert_groups   chat actions: each alert group's labels, severity and state, for /alerts and silences
chat_actions   chat actions: what each button stands for (its id is the button's callback data)
group_acks     chat actions: who acknowledged a group, and when
group_silences chat actions: the silence made for a group from the chat
action_log     chat actions: every press and command, who, what, when and the outcome
leases         a job one replica does at a time (the Telegram poller): its holder until a time
timeline       every decision and attempt about a group, as a person reads it: why a message went or did not
own_silences   chat actions: every silence this notifier made, so that it lists and expires only its own
seen_requests  Slack requests and Telegram updates already handled, until a replay could no longer be genuine
ui_sessions    the web view's logins: a hash of each session cookie, its user and CSRF token, until it ends
group_lifecycles  per group, the newest lifecycle known of each alert (GroupLifecycles, MessagePack): what makes a
               late copy from an Alertmanager peer stale
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

notifications = Table(
    "notifications",
    metadata,
    Column("id", String(26), primary_key=True),
    Column("received_at", Double, nullable=False),
    Column("am_receiver", Text, nullable=False),
    Column("group_key", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("alert_count", Integer, nullable=False),
    Column("redelivery_key", String(64), nullable=False),
    Column("payload", Text, nullable=False),  # the body as received, or '' when it is in payload_packed
    Column("payload_packed", LargeBinary, nullable=True),  # a large body, compressed: see store/payloads.py
    Index("ix_notifications_received_at", "received_at"),
)

intake_keys = Table(
    "intake_keys",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("notification_id", String(26), nullable=False),
    Column("expires_at", Double, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(26), primary_key=True),
    Column("notification_id", String(26), ForeignKey("notifications.id"), nullable=False),
    Column("receiver", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("group_key", Text, nullable=False),
    Column("group_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("silent", Boolean, nullable=False, default=False),
    Column("change", Text, nullable=False, default="{}"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("parts_sent", Integer, nullable=False, default=0),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("next_attempt_at", Double, nullable=False),
    Column("sent_at", Double),
    Column("last_error", Text),
    Column("lease_owner", String(64)),
    Column("lease_until", Double),
    Column("provider_ref", Text),
    Index("ix_deliveries_state_due", "state", "next_attempt_at"),
    Index("ix_deliveries_target_group", "target", "group_hash", "state"),
    Index("ix_deliveries_notification", "notification_id"),
    Index(
        "uq_deliveries_one_pending",
        "target",
        "group_hash",
        unique=True,
        sqlite_where=text("state = 'pending'"),
        postgresql_where=text("state = 'pending'"),
    ),
)

threads = Table(
    "threads",
    metadata,
    Column("target", Text, primary_key=True),
    Column("group_hash", String(64), primary_key=True),
    Column("provider_ref", Text, nullable=False),
    Column("created_at", Double, nullable=False),
)

digest_items = Table(
    "digest_items",
    metadata,
    Column("id", String(26), primary_key=True),
    Column("receiver", Text, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("starts_at", String(40), nullable=False),
    Column("ends_at", String(40)),
    Column("status", String(16), nullable=False),
    Column("alertname", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("summary", Text, nullable=False),
    Column("labels", Text, nullable=False),
    Column("generator_url", Text, nullable=False),
    Column("first_seen", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
    Index("ux_digest_items_episode", "receiver", "fingerprint", "starts_at", unique=True),
    Index("ix_digest_items_seen", "receiver", "last_seen"),
)

digest_runs = Table(
    "digest_runs",
    metadata,
    Column("receiver", Text, primary_key=True),
    Column("tick_at", Double, primary_key=True),
    Column("ran_at", Double, nullable=False),
)

rate_slots = Table(
    "rate_slots",
    metadata,
    Column("key", Text, nullable=False),
    Column("at", Double, nullable=False),
    Index("ix_rate_slots_key_at", "key", "at"),
)

rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("key", Text, primary_key=True),
    Column("full_at", Double, nullable=False),
)

group_state = Table(
    "group_state",
    metadata,
    Column("receiver", Text, primary_key=True),
    Column("group_hash", String(64), primary_key=True),
    Column("group_key", Text, nullable=False),
    Column("alerts", Text, nullable=False),
    Column("last_sent_at", Double, nullable=False),
)

alert_groups = Table(
    "alert_groups",
    metadata,
    Column("group_hash", String(64), primary_key=True),
    Column("am_receiver", Text, nullable=False),
    Column("group_key", Text, nullable=False),
    Column("labels", Text, nullable=False),  # JSON: the group's labels, as /alerts and the web view show them
    Column("title", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("firing", Integer, nullable=False),  # alerts firing
    Column("firing_since", Double),  # when the oldest firing alert started; NULL once resolved
    Column("updated_at", Double, nullable=False),
    Column("receivers", Text, nullable=False, server_default="[]"),  # JSON: who it routes to: who may act on it
    Index("ix_alert_groups_firing", "firing", "updated_at"),
)

chat_actions = Table(
    "chat_actions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("group_hash", String(64), nullable=False),
    Column("action", String(16), nullable=False),
    Column("duration", Double),  # a silence's
    Column("silence_id", Text),  # a silence /silences listed
    Column("created_at", Double, nullable=False),
    Index("ix_chat_actions_created", "created_at"),
)

group_acks = Table(
    "group_acks",
    metadata,
    Column("group_hash", String(64), primary_key=True),
    Column("actor", Text, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("at", Double, nullable=False),
)

group_silences = Table(
    "group_silences",
    metadata,
    Column("group_hash", String(64), primary_key=True),
    Column("silence_id", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("until", Double, nullable=False),
    Column("at", Double, nullable=False),
)

action_log = Table(
    "action_log",
    metadata,
    Column("id", String(26), primary_key=True),
    Column("at", Double, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", String(16), nullable=False),
    Column("group_hash", String(64)),
    Column("outcome", String(16), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_action_log_at", "at"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("until", Double, nullable=False),
)

timeline = Table(
    "timeline",
    metadata,
    Column("id", String(26), primary_key=True),  # a ULID: sorts by time, so time ranges and retention go by it
    Column("at", Double, nullable=False),
    Column("group_hash", String(64), nullable=False),
    Column("group_key", Text, nullable=False),
    Column("kind", String(16), nullable=False),  # webhook, decision, attempt, action
    Column("subject", Text, nullable=False),  # the receiver of a decision, the target of an attempt, or ''
    Column("outcome", String(24), nullable=False),
    Column("text", Text, nullable=False),  # the reason, as a sentence
    Column("notification_id", String(26)),
    Column("delivery_id", String(26)),
    Index("ix_timeline_group", "group_hash", "at"),
)

group_lifecycles = Table(
    "group_lifecycles",
    metadata,
    Column("group_hash", String(64), primary_key=True),
    Column("lifecycles", LargeBinary, nullable=False),
    Column("updated_at", Double, nullable=False),
)

own_silences = Table(
    "own_silences",
    metadata,
    Column("silence_id", Text, primary_key=True),
    Column("group_hash", String(64), nullable=False),
    Column("created_by", Text, nullable=False),
    Column("ends_at", Double, nullable=False),
    Column("created_at", Double, nullable=False),
    Index("ix_own_silences_ends", "ends_at"),
)

seen_requests = Table(
    "seen_requests",
    metadata,
    Column("key", String(80), primary_key=True),
    Column("expires_at", Double, nullable=False),
)

ui_sessions = Table(
    "ui_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # sha256 of the cookie: the store never holds a usable one
    Column("user", Text, nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
)

escalations = Table(
    "escalations",
    metadata,
    Column("group_hash", String(64), primary_key=True),
    Column("route_path", Text, primary_key=True),  # the route whose steps these are
    Column("group_key", Text, nullable=False),
    Column("state", String(16), nullable=False),  # armed, running, done, ended, resolved, closed
    Column("armed_at", Double, nullable=False),
    Column("started_at", Double),  # when the route's receivers were first sent the group; the steps count from it
    Column("step", Integer, nullable=False),  # the next step's index
    Column("due_at", Double),  # when the next step fires
    Column("steps", Text, nullable=False),  # JSON: the route's steps when the chain was armed
    Column("route_receivers", Text, nullable=False),  # JSON
    Column("quiet_schedule", Text),  # the route's quiet-hours schedule, for steps that respect it
    Column("paged", Text, nullable=False),  # JSON: receivers the steps sent the group to
    Column("notification_id", String(26), nullable=False),  # the group's newest notification
    Column("ended", Text),  # why the chain ended, as a sentence
    Column("updated_at", Double, nullable=False),
    Index("ix_escalations_state", "state"),
)

watchdogs = Table(
    "watchdogs",
    metadata,
    Column("source", String(64), primary_key=True),  # a hash of the Watchdog's labels
    Column("name", Text, nullable=False),  # how messages name the source (its prometheus/replica/instance label)
    Column("labels", Text, nullable=False),  # JSON
    Column("last_seen", Double, nullable=False),
    Column("state", String(16), nullable=False),  # ok, missing
    Column("missing_since", Double),
    Column("changed_at", Double, nullable=False),
)
