#!/usr/bin/env python3
"""Writes deploy/grafana/crm-dashboard.json, the CRM backend's Grafana dashboard.

The JSON is generated so that its ~60 panels stay consistent (layout, units, data source, filters); edit
this file, run it, and commit both:
    python3 deploy/grafana/build_dashboard.py            # rewrites crm-dashboard.json
    python3 deploy/grafana/build_dashboard.py --stdout   # prints it instead
tests/deploy/check_dashboard.sh fails when the committed JSON differs from what this script writes.

Rows: gRPC RED per service, gateway, RocksDB, events, business KPIs, notifications and campaigns. Variables:
datasource (any Prometheus), namespace and service (both multi-value, "All" by default). Every query filters
on service and namespace, so the same dashboard works on the local Prometheus (no namespace label) and in
Kubernetes.
"""
import json
import os
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
# Filters every CRM series takes.
F = 'service=~"$service",namespace=~"$namespace"'
NOT_HEALTH = 'grpc_service!~"grpc\\\\.health\\\\..*|grpc\\\\.reflection\\\\..*"'
SERVER_ERRORS = 'grpc_code=~"UNKNOWN|INTERNAL|UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED"'


class Layout:
    """Places panels left to right in rows of 24 columns."""

    def __init__(self):
        self.panels = []
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_height = 0

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def row(self, title):
        self._newline()
        self.panels.append({
            "type": "row", "title": title, "id": self._id(), "collapsed": False, "panels": [],
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
        })
        self.y += 1

    def _newline(self):
        if self.x > 0:
            self.y += self.row_height
            self.x = 0
            self.row_height = 0

    def add(self, panel, w, h):
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)


def targets(queries):
    out = []
    for i, (expr, legend) in enumerate(queries):
        out.append({
            "datasource": DS, "refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
            "range": True, "editorMode": "code",
        })
    return out


def timeseries(title, description, queries, unit="short", stack=False, min0=True, thresholds=None):
    defaults = {
        "unit": unit,
        "custom": {
            "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if not stack else 40, "showPoints": "never",
            "spanNulls": False, "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            "axisPlacement": "auto", "thresholdsStyle": {"mode": "line" if thresholds else "off"},
        },
        "color": {"mode": "palette-classic"},
    }
    if min0:
        defaults["min"] = 0
    if thresholds:
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None}] + [
            {"color": color, "value": value} for value, color in thresholds]}
    return {
        "type": "timeseries", "title": title, "description": description, "datasource": DS,
        "targets": targets(queries),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(title, description, expr, unit="short", thresholds=None, decimals=None, legend=""):
    steps = [{"color": "green", "value": None}]
    if thresholds:
        steps = [{"color": c, "value": v} for v, c in thresholds]
    defaults = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}, "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat", "title": title, "description": description, "datasource": DS,
        "targets": targets([(expr, legend)]),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value", "graphMode": "area", "justifyMode": "auto", "orientation": "auto",
            "textMode": "auto",
        },
    }


def bargauge(title, description, queries, unit="short"):
    return {
        "type": "bargauge", "title": title, "description": description, "datasource": DS,
        "targets": targets(queries),
        "fieldConfig": {"defaults": {"unit": unit, "min": 0, "color": {"mode": "palette-classic"},
                                     "thresholds": {"mode": "absolute",
                                                    "steps": [{"color": "green", "value": None}]}},
                        "overrides": []},
        "options": {"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
    }


def build():
    L = Layout()
    ri = "$__rate_interval"

    # ------------------------------------------------------------------------------------------------------
    L.row("RED per service (gRPC server)")
    L.add(timeseries(
        "Requests per second", "Calls completed per second, by service (health checks and reflection left out).",
        [(f'sum by (service) (rate(grpc_server_handled_total{{{F},{NOT_HEALTH}}}[{ri}]))', "{{service}}")],
        unit="reqps"), 8, 8)
    L.add(timeseries(
        "Server-side error ratio",
        "Share of calls ending UNKNOWN, INTERNAL, UNAVAILABLE, DATA_LOSS or DEADLINE_EXCEEDED (the availability "
        "SLO's errors; client errors such as INVALID_ARGUMENT or NOT_FOUND are not). SLO: 99.9%, the line at 0.1%.",
        [(f'(sum by (service) (rate(grpc_server_handled_total{{{F},{NOT_HEALTH},{SERVER_ERRORS}}}[{ri}])) or '
          f'0 * sum by (service) (rate(grpc_server_handled_total{{{F},{NOT_HEALTH}}}[{ri}]))) / '
          f'sum by (service) (rate(grpc_server_handled_total{{{F},{NOT_HEALTH}}}[{ri}]))', "{{service}}")],
        unit="percentunit", thresholds=[(0.001, "red")]), 8, 8)
    L.add(timeseries(
        "Unary latency p50 / p99",
        "From grpc_server_handling_seconds. SLO: 99% of unary calls within 250 ms (the line).",
        [(f'histogram_quantile(0.5, sum by (service, le) (rate(grpc_server_handling_seconds_bucket'
          f'{{{F},{NOT_HEALTH},grpc_type="unary"}}[{ri}])))', "p50 {{service}}"),
         (f'histogram_quantile(0.99, sum by (service, le) (rate(grpc_server_handling_seconds_bucket'
          f'{{{F},{NOT_HEALTH},grpc_type="unary"}}[{ri}])))', "p99 {{service}}")],
        unit="s", thresholds=[(0.25, "red")]), 8, 8)
    L.add(timeseries(
        "Error budget burn rate (1 h)",
        "Server-side error ratio over the last hour divided by the 0.1% budget (recording rule from alerts.yml). "
        "1 = spending the budget exactly in 30 days; 14.4 pages (with the 5 m window), 6 opens a ticket (6 h).",
        [(f'service:crm_grpc_server_errors:ratio_rate1h{{service=~"$service"}} / 0.001', "{{service}}")],
        unit="short", thresholds=[(6, "orange"), (14.4, "red")]), 8, 8)
    L.add(timeseries(
        "Latency budget burn rate (1 h)",
        "Share of unary calls slower than 250 ms over the last hour divided by the 1% budget.",
        [(f'service:crm_grpc_server_slow:ratio_rate1h{{service=~"$service"}} / 0.01', "{{service}}")],
        unit="short", thresholds=[(6, "orange"), (14.4, "red")]), 8, 8)
    L.add(timeseries(
        "Calls not OK, by code", "Every status other than OK, per service and code, per second.",
        [(f'sum by (service, grpc_code) (rate(grpc_server_handled_total{{{F},{NOT_HEALTH},grpc_code!="OK"}}[{ri}]))',
          "{{service}} {{grpc_code}}")],
        unit="reqps", stack=True), 8, 8)
    L.add(timeseries(
        "Slowest methods (p99)", "The ten methods with the highest p99 latency.",
        [(f'topk(10, histogram_quantile(0.99, sum by (service, grpc_method, le) (rate(grpc_server_handling_seconds_bucket'
          f'{{{F},{NOT_HEALTH}}}[{ri}]))))', "{{service}} {{grpc_method}}")],
        unit="s"), 12, 8)
    L.add(timeseries(
        "Outgoing calls failing (client side)",
        "Calls this service made to another one that did not end OK, by callee and code.",
        [(f'sum by (service, grpc_service, grpc_code) (rate(grpc_client_handled_total{{{F},grpc_code!="OK"}}[{ri}]))',
          "{{service}} -> {{grpc_service}} {{grpc_code}}")],
        unit="reqps"), 12, 8)

    # ------------------------------------------------------------------------------------------------------
    L.row("Gateway")
    L.add(timeseries(
        "Requests by protocol", "gRPC, gRPC-Web and Connect requests per second.",
        [(f'sum by (protocol) (rate(crm_gateway_requests_total{{{F}}}[{ri}]))', "{{protocol}}")],
        unit="reqps", stack=True), 8, 8)
    L.add(timeseries(
        "Requests not OK, by route and code", "",
        [(f'sum by (route, code) (rate(crm_gateway_requests_total{{{F},code!="OK"}}[{ri}]))', "{{route}} {{code}}")],
        unit="reqps"), 8, 8)
    L.add(timeseries(
        "In flight", "Requests being handled right now, per gateway pod.",
        [(f'crm_gateway_in_flight{{{F}}}', "{{pod}}{{instance}}")]), 8, 8)
    L.add(timeseries(
        "Rate limited, by role", "Requests refused because the caller's role exceeded its rate.",
        [(f'sum by (role) (rate(crm_gateway_rate_limited_total{{{F}}}[{ri}]))', "{{role}}")], unit="reqps"), 12, 8)
    L.add(timeseries(
        "Denied, by reason", "Requests refused by authentication or authorization (bad token, expired, wrong role...).",
        [(f'sum by (reason) (rate(crm_gateway_denied_total{{{F}}}[{ri}]))', "{{reason}}")], unit="reqps"), 12, 8)
    L.add(timeseries(
        "Replicated writes whose shards answered differently (per hour)",
        "Calls of a write every shard applies to its own copy (an article, a canned reply, an agent, a webhook, a "
        "campaign) whose shards answered different copies, timestamps aside; the caller got the first shard's. A "
        "rise means a shard missed earlier writes: the gateway's warning log names the shards and the request id.",
        [(f'sum by (method) (increase(crm_gateway_replicated_answers_differ_total{{{F}}}[1h]))', "{{method}}")],
        thresholds=[(1, "red")]), 24, 8)

    # ------------------------------------------------------------------------------------------------------
    L.row("RocksDB")
    L.add(timeseries(
        "Estimated keys", "Per service and column family, all shards added up.",
        [(f'sum by (service, column_family) (crm_rocksdb_estimated_keys{{{F}}})', "{{service}} {{column_family}}")]),
        8, 8)
    L.add(timeseries(
        "Live data and SST files", "Estimated live data and the size of SST files on disk, per service.",
        [(f'sum by (service) (crm_rocksdb_live_data_bytes{{{F}}})', "live {{service}}"),
         (f'sum by (service) (crm_rocksdb_sst_files_bytes{{{F}}})', "sst {{service}}")],
        unit="bytes"), 8, 8)
    L.add(timeseries(
        "Pending compaction", "Bytes compaction still has to rewrite, per shard. RocksDB delays writes from 64 GiB.",
        [(f'crm_rocksdb_pending_compaction_bytes{{{F}}}', "{{service}} {{pod}}")],
        unit="bytes", thresholds=[(34359738368, "orange")]), 8, 8)
    L.add(timeseries(
        "Write stalls", "Writes stopped (1) and the delayed write rate RocksDB throttles to (0 = not throttled).",
        [(f'max by (service, pod) (crm_rocksdb_write_stopped{{{F}}})', "stopped {{service}} {{pod}}"),
         (f'max by (service, pod) (crm_rocksdb_delayed_write_rate_bytes{{{F}}}) > 0', "delayed B/s {{service}} {{pod}}")],
        unit="short"), 8, 8)
    L.add(timeseries(
        "Block cache and memtables", "Block cache usage (memtables are charged to it) and memtable memory, per shard.",
        [(f'crm_rocksdb_block_cache_bytes{{{F}}}', "cache {{service}} {{pod}}"),
         (f'sum by (service, pod) (crm_rocksdb_memtable_bytes{{{F}}})', "memtables {{service}} {{pod}}")],
        unit="bytes"), 8, 8)
    L.add(timeseries(
        "Resident memory against the budget",
        "Resident memory per process, and each data service's memory budget (--block_cache_mb) plus the stated "
        "64 MiB fixed overhead: the line CrmMemoryOverBudget fires above.",
        [(f'process_resident_memory_bytes{{{F}}}', "RSS {{service}} {{pod}}"),
         (f'crm_memory_budget_bytes{{{F}}} + 67108864 + (sum without (part) '
          f'(crm_memory_outside_budget_bytes{{{F}}}) or crm_memory_budget_bytes{{{F}}} * 0)',
          "budget + overhead + held outside it {{service}} {{pod}}")],
        unit="bytes"), 8, 8)
    L.add(timeseries(
        "Volume free (Kubernetes)", "Free share of each RocksDB volume (kubelet). The alert fires below 10%.",
        [('kubelet_volume_stats_available_bytes{namespace=~"$namespace",persistentvolumeclaim=~"data-.+"} / '
          'kubelet_volume_stats_capacity_bytes{namespace=~"$namespace",persistentvolumeclaim=~"data-.+"}',
          "{{persistentvolumeclaim}}")],
        unit="percentunit", thresholds=[(0.1, "red")]), 8, 8)

    # ------------------------------------------------------------------------------------------------------
    L.row("Events (outbox and delivery)")
    L.add(timeseries(
        "Outbox backlog", "Events written but not yet acknowledged, by producer and consumer (all shards).",
        [(f'sum by (service, destination) (crm_outbox_backlog_events{{{F}}})', "{{service}} -> {{destination}}")]),
        8, 8)
    L.add(timeseries(
        "Oldest pending event age", "Age of the oldest unacknowledged event; 0 when caught up. Pages above 5 minutes.",
        [(f'max by (service, destination) (crm_outbox_oldest_pending_age_seconds{{{F}}})',
          "{{service}} -> {{destination}}")],
        unit="s", thresholds=[(300, "red")]), 8, 8)
    L.add(timeseries(
        "End-to-end lag p99", "From the event's time to the consumer's acknowledgement.",
        [(f'histogram_quantile(0.99, sum by (service, destination, le) (rate(crm_event_end_to_end_lag_seconds_bucket'
          f'{{{F}}}[{ri}])))', "{{service}} -> {{destination}}")],
        unit="s"), 8, 8)
    L.add(timeseries(
        "Deliveries", "Delivery calls per second by result; errors are retried with backoff.",
        [(f'sum by (service, destination, result) (rate(crm_event_deliveries_total{{{F}}}[{ri}]))',
          "{{service}} -> {{destination}} {{result}}")],
        unit="reqps"), 8, 8)
    L.add(timeseries(
        "Dead letters", "Dead letters waiting for a replay (stored), and new ones in the last hour.",
        [(f'sum by (service) (crm_event_dead_letters{{{F}}})', "stored {{service}}"),
         (f'sum by (service, destination) (increase(crm_event_dead_letters_total{{{F}}}[1h]))',
          "new/1h {{service}} -> {{destination}}")],
        thresholds=[(1, "red")]), 8, 8)
    L.add(timeseries(
        "Events consumed", "Events applied by each consumer, by type and result.",
        [(f'sum by (service, type, result) (rate(crm_events_consumed_total{{{F}}}[{ri}]))',
          "{{service}} {{type}} {{result}}")],
        unit="reqps"), 8, 8)

    # ------------------------------------------------------------------------------------------------------
    L.row("Business KPIs")
    kpis = [
        ("Repeat purchase rate", "crm_kpi_repeat_purchase_rate", "percentunit", None),
        ("90-day retention", "crm_kpi_retention_90d_rate", "percentunit", None),
        ("CSAT average", "crm_kpi_csat_average", "short", [(None, "red"), (3.5, "orange"), (4.2, "green")]),
        ("Top-tier share", "crm_kpi_top_tier_share", "percentunit", None),
        ("On-time delivery (KPI)", "crm_kpi_on_time_delivery_rate", "percentunit",
         [(None, "red"), (0.9, "orange"), (0.95, "green")]),
        ("SLA compliance", "crm_kpi_sla_compliance_rate", "percentunit",
         [(None, "red"), (0.95, "orange"), (0.99, "green")]),
        ("At-risk customers", "crm_kpi_at_risk_customers", "short", None),
    ]
    widths = [4, 3, 3, 3, 4, 4, 3]
    for (title, metric, unit, thresholds), w in zip(kpis, widths):
        L.add(stat(title, f"{metric} (latest).", f'max({metric}{{namespace=~"$namespace"}})', unit=unit,
                   thresholds=thresholds, decimals=2 if unit == "short" and "csat" in metric else None), w, 4)
    L.add(timeseries(
        "On-time delivery rate (1 h)", "on_time / all deliveries over the last hour (crm_orders_delivered_total). "
        "The alert opens a ticket below 90% (at least 20 deliveries).",
        [(f'sum(increase(crm_orders_delivered_total{{{F},timeliness="on_time"}}[1h])) / '
          f'sum(increase(crm_orders_delivered_total{{{F}}}[1h]))', "on time")],
        unit="percentunit", min0=False, thresholds=[(0.9, "red")]), 8, 8)
    L.add(timeseries(
        "Deliveries by timeliness", "Deliveries per hour: early, on time, late; and failed delivery attempts.",
        [(f'sum by (timeliness) (increase(crm_orders_delivered_total{{{F}}}[1h]))', "{{timeliness}}"),
         (f'sum(increase(crm_packages_delivery_failed_total{{{F}}}[1h]))', "delivery failed")],
        stack=False), 8, 8)
    L.add(timeseries(
        "Orders", "Orders created, cancelled, returns by status, per hour.",
        [(f'sum(increase(crm_orders_created_total{{{F}}}[1h]))', "created"),
         (f'sum(increase(crm_orders_cancelled_total{{{F}}}[1h]))', "cancelled"),
         (f'sum by (status) (increase(crm_returns_total{{{F}}}[1h]))', "returns {{status}}"),
         (f'sum(increase(crm_reviews_total{{{F}}}[1h]))', "reviews")]), 8, 8)
    L.add(timeseries(
        "Open tickets by priority", "Complaint tickets not closed yet.",
        [(f'sum by (priority) (crm_tickets_open{{{F}}})', "{{priority}}")], stack=True), 8, 8)
    L.add(timeseries(
        "SLA breaches by kind (per hour)", "First response, next update, resolution and callback deadlines missed.",
        [(f'sum by (kind) (increase(crm_sla_breaches_total{{{F}}}[1h]))', "{{kind}}")], stack=True), 8, 8)
    L.add(timeseries(
        "Tickets opened by channel (per hour), escalations", "",
        [(f'sum by (channel) (increase(crm_tickets_opened_total{{{F}}}[1h]))', "{{channel}}"),
         (f'sum(increase(crm_ticket_escalations_total{{{F}}}[1h]))', "escalations")]), 8, 8)
    L.add(timeseries(
        "Ticket first response and resolution (p50 / p90)", "",
        [(f'histogram_quantile(0.5, sum by (le) (rate(crm_ticket_first_response_seconds_bucket{{{F}}}[1h])))',
          "first response p50"),
         (f'histogram_quantile(0.9, sum by (le) (rate(crm_ticket_first_response_seconds_bucket{{{F}}}[1h])))',
          "first response p90"),
         (f'histogram_quantile(0.5, sum by (le) (rate(crm_ticket_resolution_seconds_bucket{{{F}}}[1h])))',
          "resolution p50"),
         (f'histogram_quantile(0.9, sum by (le) (rate(crm_ticket_resolution_seconds_bucket{{{F}}}[1h])))',
          "resolution p90")],
        unit="s"), 8, 8)
    L.add(bargauge(
        "CSAT scores (last 7 days)", "Satisfaction ratings by score, 1 (worst) to 5.",
        [(f'sum by (score) (increase(crm_ticket_csat_total{{{F}}}[7d]))', "{{score}}")]), 8, 8)
    L.add(stat(
        "Knowledge base deflection (7 days)", "Suggested articles after which the customer opened no ticket "
        "within 24 hours, of all suggestions settled in the last 7 days.",
        f'sum(increase(crm_knowledge_base_suggestions_total{{{F},outcome="deflected"}}[7d])) / '
        f'sum(increase(crm_knowledge_base_suggestions_total{{{F}}}[7d]))',
        unit="percentunit", legend="deflected"), 4, 8)
    # Surveys (customer-profile).
    # Ratios are computed from the 30-day answer counts summed over shards, so they are exact with any number of
    # customer-profile shards (the per-shard gauges crm_survey_nps etc. are for one process).
    L.add(stat(
        "NPS (30 days)", "Net Promoter Score of survey answers in the last 30 days: % promoters (9-10) - "
        "% detractors (0-6) of 'how likely are you to recommend us', by survey kind.",
        f'100 * (sum by (kind) (crm_survey_recommend_answers_30d{{{F},group="promoter"}}) - '
        f'sum by (kind) (crm_survey_recommend_answers_30d{{{F},group="detractor"}})) / '
        f'sum by (kind) (crm_survey_recommend_answers_30d{{{F}}})',
        thresholds=[(None, "red"), (0, "orange"), (30, "green")], decimals=0, legend="{{kind}}"), 4, 8)
    L.add(stat(
        "Referral rate (30 days)", "Share of survey answers saying the customer has recommended us (客户推荐率), "
        "by survey kind.",
        f'sum by (kind) (crm_survey_referral_answers_30d{{{F},answer="yes"}}) / '
        f'sum by (kind) (crm_survey_referral_answers_30d{{{F}}})',
        unit="percentunit", legend="{{kind}}"), 4, 8)
    L.add(bargauge(
        "Satisfaction distribution (30 days)", "Survey answers per service stage and score, 1 (very "
        "dissatisfied) to 5 (客户满意度分布).",
        [(f'sum by (stage, score) (crm_survey_satisfaction_answers_30d{{{F}}})', "{{stage}} {{score}}")]), 8, 8)
    L.add(timeseries(
        "Surveys (per hour)", "Surveys offered, suppressed (no consent, contact cap), skipped (no customer, "
        "stale) and answered, by kind.",
        [(f'sum by (kind, result) (increase(crm_surveys_offered_total{{{F}}}[1h]))', "{{kind}} {{result}}"),
         (f'sum by (kind) (increase(crm_surveys_answered_total{{{F}}}[1h]))', "{{kind}} answered")]), 8, 8)
    L.add(timeseries(
        "Survey response rate and mean satisfaction (30 days)", "Answered / offered surveys of the last 30 days; "
        "mean satisfaction per stage (1-5, right scale: averaged over shards, which hold similar customers).",
        [(f'sum by (kind) (crm_survey_offers_30d{{{F},outcome="responded"}}) / '
          f'sum by (kind) (crm_survey_offers_30d{{{F},outcome="offered"}})', "{{kind}} response rate"),
         (f'avg by (kind, stage) (crm_survey_satisfaction_mean{{{F}}}) / 5', "{{kind}} {{stage}} satisfaction / 5")],
        unit="percentunit"), 8, 8)
    L.add(bargauge(
        "Loyalty members per tier", "",
        [(f'sum by (tier) (crm_loyalty_members{{{F}}})', "{{tier}}")]), 8, 8)
    L.add(timeseries(
        "Points issued, redeemed, expired, reversed (per hour)", "",
        [(f'sum by (source) (increase(crm_points_issued_total{{{F}}}[1h]))', "issued {{source}}"),
         (f'sum(increase(crm_points_redeemed_total{{{F}}}[1h]))', "redeemed"),
         (f'sum(increase(crm_points_expired_total{{{F}}}[1h]))', "expired"),
         (f'sum(increase(crm_points_reversed_total{{{F}}}[1h]))', "reversed")]), 8, 8)
    L.add(timeseries(
        "Tier changes (per hour)", "",
        [(f'sum by (direction) (increase(crm_tier_changes_total{{{F}}}[1h]))', "{{direction}}")]), 8, 8)
    L.add(timeseries(
        "Customers (per hour)", "Registrations, erasures, and contact decisions by reason.",
        [(f'sum(increase(crm_customers_registered_total{{{F}}}[1h]))', "registered"),
         (f'sum(increase(crm_customers_erased_total{{{F}}}[1h]))', "erased"),
         (f'sum by (reason) (increase(crm_contact_decisions_total{{{F}}}[1h]))', "contact {{reason}}")]), 8, 8)
    L.add(timeseries(
        "Behaviour events and refunds (per hour)", "",
        [(f'sum by (type) (increase(crm_behavior_events_total{{{F}}}[1h]))', "{{type}}"),
         (f'sum by (currency) (increase(crm_refunds_minor_units_total{{{F}}}[1h])) / 100',
          "refunds {{currency}} (major units)")]), 8, 8)
    L.add(timeseries(
        "Recommendations: served and click-through rate", "Served per placement per second; CTR = clicks / impressions "
        "per model over the last hour.",
        [(f'sum by (placement) (rate(crm_recommendations_served_total{{{F}}}[{ri}]))', "served {{placement}}"),
         (f'sum by (model) (increase(crm_recommendation_clicks_total{{{F}}}[1h])) / '
          f'sum by (model) (increase(crm_recommendation_impressions_total{{{F}}}[1h]))', "CTR {{model}}")]), 8, 8)
    L.add(timeseries(
        "Recommendations: items, withheld, learned (per hour)",
        "Items recommended by model; e-mail/push recommendations withheld by reason; interactions learned from "
        "events by kind.",
        [(f'sum by (model) (increase(crm_recommendation_items_total{{{F}}}[1h]))', "items {{model}}"),
         (f'sum by (reason) (increase(crm_recommendations_withheld_total{{{F}}}[1h]))', "withheld {{reason}}"),
         (f'sum by (kind) (increase(crm_recommendation_learned_total{{{F}}}[1h]))', "learned {{kind}}")]), 8, 8)
    L.add(timeseries(
        "Recommendations: neighbour rebuilds (per hour)",
        "Every item's neighbour list rebuilt from the pair counts, by trigger: changes (by itself, after an import "
        "or once learning was idle for a minute), request (RebuildItemNeighbours); and rebuilds that failed, each "
        "retried by itself (CrmNeighbourRebuildsFailing opens a ticket at 3 in 30 minutes).",
        [(f'sum by (trigger) (increase(crm_recommendation_neighbour_rebuilds_total{{{F}}}[1h]))',
          "rebuilt {{trigger}}"),
         (f'sum by (trigger) (increase(crm_recommendation_neighbour_rebuild_failures_total{{{F}}}[1h]))',
          "failed {{trigger}}")]), 8, 8)
    L.add(timeseries(
        "Order tracking: carrier events and watchers", "",
        [(f'sum by (outcome) (rate(crm_tracking_events_total{{{F}}}[{ri}]))', "tracking {{outcome}}/s"),
         (f'sum(crm_order_watchers{{{F}}})', "live watchers")]), 8, 8)

    # ------------------------------------------------------------------------------------------------------
    L.row("Notifications and campaigns")
    L.add(timeseries(
        "Notifications made, by result (per hour)",
        "Notifications customer-profile made, by kind (campaign, order_update, reminder) and result: scheduled, "
        "held_out (a campaign's control group), suppressed as no_consent, frequency_cap or no_channel.",
        [(f'sum by (kind, result) (increase(crm_notifications_total{{{F}}}[1h]))', "{{kind}} {{result}}")]), 8, 8)
    L.add(timeseries(
        "Deliveries, by result (per hour)",
        "Delivery attempts by channel and result: sent, retry (the relay or gateway will be tried again), "
        "rejected and failed (given up: the notification is FAILED), no_sender, withdrawn, consent_withdrawn. "
        "CrmNotificationsFailing opens a ticket when failed and rejected pass 5% of attempts.",
        [(f'sum by (channel, result) (increase(crm_notification_deliveries_total{{{F}}}[1h]))',
          "{{channel}} {{result}}")]), 8, 8)
    L.add(timeseries(
        "Deliveries failing (share over 15 minutes)",
        "Failed + rejected of all delivery attempts over the last 15 minutes. CrmNotificationsFailing opens a "
        "ticket above 5% (at least 20 attempts).",
        [(f'sum(increase(crm_notification_deliveries_total{{{F},result=~"failed|rejected"}}[15m])) / '
          f'sum(increase(crm_notification_deliveries_total{{{F}}}[15m]))', "failing")],
        unit="percentunit", thresholds=[(0.05, "red")]), 8, 8)
    L.add(timeseries(
        "Notifications due, not yet delivered",
        "Per shard, at its last delivery pass (at most one batch): 0 when the senders keep up; stuck above 0 and "
        "rising when a relay or gateway is down or --notification_sends_per_second is too low.",
        [(f'crm_notifications_due{{{F}}}', "{{pod}}{{instance}}")]), 8, 8)
    L.add(timeseries(
        "Engagements (per hour)", "Notifications opened or clicked (RecordEngagement), by kind.",
        [(f'sum by (kind, action) (increase(crm_notification_engagements_total{{{F}}}[1h]))',
          "{{kind}} {{action}}")]), 8, 8)
    L.add(timeseries(
        "Reminders due (per hour)", "Occasion reminders and upgrade notices recommendation's sweep wrote as "
        "ReminderDue events (at most one of each kind per customer per UTC day).",
        [(f'sum by (kind) (increase(crm_reminders_due_total{{{F}}}[1h]))', "{{kind}}")]), 8, 8)

    def query_var(name, label, query):
        return {
            "type": "query", "name": name, "label": label, "datasource": DS,
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "definition": query, "includeAll": True, "allValue": ".*", "multi": True, "refresh": 2,
            "sort": 1, "hide": 0, "regex": "", "options": [],
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        }

    return {
        "title": "CRM backend",
        "uid": "crm-backend",
        "description": "gRPC RED per service, gateway, RocksDB, events and business KPIs of the CRM backend. "
                       "Alerts and runbooks: deploy/prometheus/alerts.yml, deploy/README.md.",
        "tags": ["crm"],
        "schemaVersion": 36,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "timezone": "",
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "templating": {"list": [
            {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus",
             "hide": 0, "refresh": 1, "regex": "", "options": [], "includeAll": False, "multi": False,
             "current": {}},
            query_var("namespace", "Namespace", 'label_values(up{service=~".+"}, namespace)'),
            query_var("service", "Service", 'label_values(up{service=~".+",namespace=~"$namespace"}, service)'),
        ]},
        "panels": L.panels,
    }


def main():
    text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
    if "--stdout" in sys.argv[1:]:
        sys.stdout.write(text)
        return
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crm-dashboard.json")
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
