"""`/metrics` (Prometheus text format) of real routers: a real Prometheus
(the Debian package, started here on 127.0.0.1 with a temporary config)
scrapes two routers and a PromQL query over its HTTP API returns the
deliveries Python Proton sent; and every metric name the Grafana dashboards
in dashboards/ use exists in a live router's /metrics."""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest

from clients import Receiver, Sender
from conftest import Router, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARDS = os.path.join(ROOT, "dashboards", "grafana")
PROMETHEUS = "/usr/bin/prometheus"
N = 37


def scrape(router):
    with urllib.request.urlopen(router.http_url + "/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def series(text):
    """{name{labels}: value} of every sample line, and {family: type}."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, ty = line.split(" ")
            types[name] = ty
        elif line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples, types


@pytest.fixture(scope="module")
def pair():
    a = Router("Router.A", inter_router=True)
    b = Router("Router.B", connectors=[("to-a", a.inter_router_port, 1)])
    wait_until(lambda: all(len(r.state().get("routes", {})) == 1 for r in (a, b)), 20,
               "the two routers to connect")
    yield a, b
    for r in (a, b):
        assert r.stop() == 0, r.log()


def send_through(a, b, address, n, keep=False):
    """n unsettled messages from a client of A to a client of B; with
    `keep`, B's receiver stays attached (so A's address stays in use: an
    address nobody uses is reclaimed, its series with it) and is returned."""
    rx = Receiver(b.url, address, expect=None if keep else n).start()
    assert rx.attached.wait(10)
    wait_until(lambda: any(x["key"] == "M0" + address and x["remoteHostRouters"] == [b.name]
                           for x in json.load(urllib.request.urlopen(
                               a.http_url + "/api/v1/addresses", timeout=10))),
               10, f"A to learn of {address} on B")
    tx = Sender(a.url, address, n, timeout=30).start()
    tx.join(30)
    if keep:
        wait_until(lambda: rx.count == n, 10, f"B's receiver to get {n}")
    else:
        rx.join(30)
    assert tx.counts() == {"accepted": n}
    assert rx.count == n
    return rx


def test_qdrouterd_names_and_types_and_labelled_series(pair):
    a, b = pair
    send_through(a, b, "metrics.names", N)
    sa, ta = series(scrape(a))
    # qdrouterd 1.19's families, with its types (src/http-libwebsockets.c).
    gauges = ["qdr_connections_total", "qdr_links_total", "qdr_addresses_total",
              "qdr_routers_total", "qdr_link_routes_total", "qdr_auto_links_total",
              "qdr_deliveries_stuck_total", "qdr_links_blocked_total"]
    counters = ["qdr_presettled_deliveries_total", "qdr_dropped_presettled_deliveries_total",
                "qdr_accepted_deliveries_total", "qdr_released_deliveries_total",
                "qdr_rejected_deliveries_total", "qdr_modified_deliveries_total",
                "qdr_deliveries_ingress_total", "qdr_deliveries_egress_total",
                "qdr_deliveries_transit_total", "qdr_deliveries_ingress_route_container_total",
                "qdr_deliveries_egress_route_container_total",
                "qdr_deliveries_delayed_1sec_total", "qdr_deliveries_delayed_10sec_total",
                "qdr_deliveries_redirected_to_fallback_total"]
    assert {n: ta.get(n) for n in gauges} == {n: "gauge" for n in gauges}
    assert {n: ta.get(n) for n in counters} == {n: "counter" for n in counters}
    assert sa["qdr_routers_total"] == 1
    assert sa["qdr_deliveries_ingress_total"] >= N
    assert sa['bote_address_deliveries_total{address="metrics.names"}'] == N
    assert sa['bote_neighbour_up{neighbour="Router.B"}'] == 1
    assert sa['bote_neighbour_cost{neighbour="Router.B"}'] == 1
    for d in ("in", "out"):
        assert sa[f'bote_neighbour_frames_total{{neighbour="Router.B",direction="{d}"}}'] > 0
        # 37 messages of ~10 bytes each crossed A -> B, with their headers.
        assert sa[f'bote_neighbour_bytes_total{{neighbour="Router.B",direction="{d}"}}'] > \
            (N * 10 if d == "out" else 0)
    assert sa["bote_topology_changes_total"] >= 1
    assert ta["bote_route_recompute_seconds"] == "histogram"
    assert sa["bote_route_recompute_seconds_count"] >= 1
    sb, _ = series(scrape(b))
    assert sb['bote_address_consumers{address="metrics.names"}'] == 0  # the receiver left
    assert sb["qdr_deliveries_egress_total"] >= N
    # A consumer attached now: its link and its address's consumer count.
    rx = Receiver(b.url, "metrics.links").start()
    try:
        assert rx.attached.wait(10)
        sb, tb = series(scrape(b))
        assert tb["bote_link_deliveries_total"] == "counter"
        links = [k for k in sb if k.startswith("bote_link_deliveries_total{")
                 and 'address="metrics.links"' in k]
        assert len(links) == 1, sb
        assert sb['bote_address_consumers{address="metrics.links"}'] == 1
        assert sb['bote_address_undelivered{address="metrics.links"}'] == 0
    finally:
        rx.stop_requested.set()
        rx.join()


def test_delivery_delays_and_settlement_latency(pair):
    """A consumer on B holds 3 deliveries from A's sender for 1.5 s before
    accepting them: on A (where they entered) each counts once in
    qdrouterd's `deliveriesDelayed1Sec` (counted on the sender's link, and
    so in the router's totals) and in `bote_delivery_settle_seconds` above
    the 1 s bucket; quick ones land below it."""
    a, b = pair
    address = "metrics.delayed"
    before, _ = series(scrape(a))
    rx = Receiver(b.url, address, settle=None).start()
    try:
        assert rx.attached.wait(10)
        wait_until(lambda: any(x["key"] == "M0" + address and x["remoteHostRouters"] == [b.name]
                               for x in json.load(urllib.request.urlopen(
                                   a.http_url + "/api/v1/addresses", timeout=10))),
                   10, f"A to learn of {address} on B")
        tx = Sender(a.url, address, 3, timeout=30).start()
        wait_until(lambda: rx.count == 3, 10, "B's consumer to hold 3 deliveries")
        time.sleep(1.5)
        rx.accept_held.set()
        tx.join(30)
        assert tx.counts() == {"accepted": 3}
        # 5 more, accepted at once.
        send_through(a, b, address + ".quick", 5)
    finally:
        rx.stop_requested.set()
        rx.join()
    after, types = series(scrape(a))

    def delta(key):
        return after.get(key, 0) - before.get(key, 0)

    assert delta("qdr_deliveries_delayed_1sec_total") == 3
    assert delta("qdr_deliveries_delayed_10sec_total") == 0
    assert types["bote_delivery_settle_seconds"] == "histogram"
    assert delta("bote_delivery_settle_seconds_count") == 8
    # The 3 held ones are above 1 s, the 5 quick ones at or below it.
    assert delta('bote_delivery_settle_seconds_bucket{le="1"}') == 5
    assert delta('bote_delivery_settle_seconds_bucket{le="2.5"}') == 8
    assert delta("bote_delivery_settle_seconds_sum") >= 3 * 1.5
    # Management's router entity (the HTTP API reads the same entity): the
    # sender's link is gone, its counts are in the router's totals.
    router = json.load(urllib.request.urlopen(a.http_url + "/api/v1/router", timeout=10))
    row = router[0] if isinstance(router, list) else router
    assert row["deliveriesDelayed1Sec"] >= 3


def test_stuck_deliveries_and_blocked_links(pair):
    """A consumer on B holds one delivery from A's sender past 10 s: A
    counts it stuck (qdrouterd's gauge, on the router and the sender's
    link) until the consumer accepts it; then it is a delivery delayed
    over 10 s. Meanwhile a receiver on B that never gives credit is a link
    blocked at zero credit (`qdr_links_blocked_total`, `zeroCreditSeconds`)
    until it leaves."""
    a, b = pair
    address = "metrics.stuck"
    before, _ = series(scrape(a))
    assert before["qdr_deliveries_stuck_total"] == 0
    assert series(scrape(b))[0]["qdr_links_blocked_total"] == 0
    starved = Receiver(b.url, "metrics.starved", credit=0).start()
    rx = Receiver(b.url, address, settle=None).start()
    try:
        assert starved.attached.wait(10)
        assert rx.attached.wait(10)
        wait_until(lambda: any(x["key"] == "M0" + address and x["remoteHostRouters"] == [b.name]
                               for x in json.load(urllib.request.urlopen(
                                   a.http_url + "/api/v1/addresses", timeout=10))),
                   10, f"A to learn of {address} on B")
        tx = Sender(a.url, address, 1, timeout=60).start()
        wait_until(lambda: rx.count == 1, 10, "B's consumer to hold the delivery")
        # Stuck after 10 s, found by a sweep every 5 s.
        seen = []
        wait_until(lambda: seen.append(series(scrape(a))[0]["qdr_deliveries_stuck_total"])
                   or seen[-1] == 1, 25,
                   lambda: f"A to count the delivery stuck (gauge read {sorted(set(seen))}, "
                           f"sender {tx.counts()}, B's consumer {rx.count}; "
                           f"A's log ends {a.log()[-2000:]!r})")
        links = json.load(urllib.request.urlopen(a.http_url + "/api/v1/links", timeout=10))
        stuck = [(l["linkDir"], l["owningAddr"], l["deliveriesStuck"]) for l in links
                 if l["deliveriesStuck"]]
        assert stuck == [("in", "M0" + address, 1)], stuck
        # By now the starved receiver has had no credit for over 10 s.
        wait_until(lambda: series(scrape(b))[0]["qdr_links_blocked_total"] == 1, 10,
                   "B to count the starved receiver's link blocked")
        links = json.load(urllib.request.urlopen(b.http_url + "/api/v1/links", timeout=10))
        zero = {l["owningAddr"]: l["zeroCreditSeconds"] for l in links if l["linkDir"] == "out"}
        assert zero["M0metrics.starved"] >= 10, zero
        assert zero["M0" + address] == 0, zero
        starved.stop_requested.set()
        starved.join()
        wait_until(lambda: series(scrape(b))[0]["qdr_links_blocked_total"] == 0, 10,
                   "the blocked link to go with its receiver")
        rx.accept_held.set()
        tx.join(30)
        assert tx.counts() == {"accepted": 1}
    finally:
        for r in (rx, starved):
            r.stop_requested.set()
            r.join()
    after, _ = series(scrape(a))
    assert after["qdr_deliveries_stuck_total"] == 0
    assert after["qdr_deliveries_delayed_10sec_total"] - \
        before["qdr_deliveries_delayed_10sec_total"] == 1


def test_series_beyond_the_cap_are_summed_under_other():
    r = Router("Router.Cap", router_extra="metrics-max-series = 2")
    receivers = []
    try:
        # The receivers stay attached: an address nobody uses is reclaimed.
        for i in range(4):
            rx = Receiver(r.url, f"cap.{i}").start()
            receivers.append(rx)
            assert rx.attached.wait(10)
            tx = Sender(r.url, f"cap.{i}", i + 1, timeout=10).start()
            tx.join(10)
            assert tx.counts() == {"accepted": i + 1}
        wait_until(lambda: sum(v for k, v in series(scrape(r))[0].items()
                               if k.startswith("bote_address_deliveries_total{")) == 10,
                   10, "the four addresses' deliveries to be counted")
        s, _ = series(scrape(r))
        fam = {k: v for k, v in s.items() if k.startswith("bote_address_deliveries_total{")}
        # cap 2: the busiest keeps its label, the other three are summed.
        assert fam == {'bote_address_deliveries_total{address="cap.3"}': 4,
                       'bote_address_deliveries_total{address="other"}': 6}
    finally:
        for rx in receivers:
            rx.stop_requested.set()
            rx.join()
        assert r.stop() == 0, r.log()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def promql(url, query):
    q = urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.mark.skipif(not os.path.exists(PROMETHEUS), reason="Debian package prometheus not installed "
                    "(scripts/test installs it)")
def test_a_real_prometheus_scrapes_two_routers(pair):
    a, b = pair
    address = "metrics.prometheus"
    rx = send_through(a, b, address, N, keep=True)
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="bote-prometheus-")
    targets = [urllib.parse.urlparse(r.http_url).netloc for r in (a, b)]
    with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: bote\n    static_configs:\n"
                f"      - targets: {json.dumps(targets)}\n")
    log = open(os.path.join(tmp, "prometheus.log"), "w")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={tmp}/data",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def scraped():
            try:
                up = promql(url, "up")
            except OSError:
                return False
            return len(up) == 2 and all(r["value"][1] == "1" for r in up)
        wait_until(scraped, 15, "Prometheus to scrape both routers")
        # Deliveries that entered the mesh for the address, over the mesh.
        query = f'sum(bote_address_deliveries_total{{address="{address}"}})'
        result = promql(url, query)
        assert [r["value"][1] for r in result] == [str(N)], result
        per_router = promql(url, f'bote_address_deliveries_total{{address="{address}"}} > 0')
        assert [(r["metric"]["instance"], r["value"][1]) for r in per_router] == \
            [(targets[0], str(N))], per_router
        # qdrouterd's names through Prometheus too: B delivered them.
        egress = promql(url, f'qdr_deliveries_egress_total{{instance="{targets[1]}"}}')
        assert len(egress) == 1 and float(egress[0]["value"][1]) >= N
    finally:
        rx.stop_requested.set()
        rx.join()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def dashboard_metric_names():
    """Every metric name in the dashboards' PromQL (targets' expr and
    template variables' queries), histogram suffixes mapped to families."""
    words = set()
    for name in sorted(os.listdir(DASHBOARDS)):
        with open(os.path.join(DASHBOARDS, name)) as f:
            board = json.load(f)
        exprs = []

        def walk(x):
            if isinstance(x, dict):
                for k, v in x.items():
                    if k in ("expr", "query") and isinstance(v, str):
                        exprs.append(v)
                    elif k == "query" and isinstance(v, dict) and "query" in v:
                        exprs.append(v["query"])
                    else:
                        walk(v)
            elif isinstance(x, list):
                for v in x:
                    walk(v)
        walk(board)
        for e in exprs:
            words.update(re.findall(r"\b(?:qdr|bote)_[a-z0-9_]+", e))
    return words


def test_every_metric_the_dashboards_use_exists(pair):
    a, b = pair
    # A receiver stays attached, so the per-link series has a link to show.
    rx = send_through(a, b, "metrics.dashboards", 3, keep=True)
    names = dashboard_metric_names()
    assert len(names) >= 20, names
    present = set()
    try:
        for r in (a, b):
            samples, _ = series(scrape(r))
            present |= {k.split("{")[0] for k in samples}
    finally:
        rx.stop_requested.set()
        rx.join()
    missing = sorted(names - present)
    assert missing == [], f"the dashboards use metrics no router exports: {missing}"
