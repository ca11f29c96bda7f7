"""The web console that each boted serves (`GET /` on its HTTP listener),
driven in headless Chromium through playwright-core (drive.mjs): a triangle
of three real routers is drawn with its links and costs, selecting an
address highlights the path its messages take and the router with its
consumer, and killing a router takes it off the graph by itself.
Screenshots are kept in target/console-test/."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "interop"))

from clients import Receiver, Sender  # noqa: E402
from conftest import ROOT, Router, wait_until  # noqa: E402

ARTEFACTS = os.path.join(ROOT, "target", "console-test")


def test_console_draws_the_mesh_highlights_a_path_and_follows_a_death():
    # A -1- B -1- C and A -5- C: from A, C is closest through B.
    a = Router("Router.A", inter_router=True)
    b = Router("Router.B", inter_router=True, connectors=[("to-a", a.inter_router_port, 1)])
    c = Router("Router.C", connectors=[("to-a", a.inter_router_port, 5),
                                       ("to-b", b.inter_router_port, 1)])
    routers = [a, b, c]
    rx = None
    receivers = []
    driver = None
    try:
        wait_until(lambda: all(len(r.state().get("routes", {})) == 2 for r in routers), 20,
                   "the triangle to converge")
        rx = Receiver(c.url, "queue.console").start()
        assert rx.attached.wait(10)
        # A client of A, consuming another address: A draws 1 client, 1 address.
        rx_a = Receiver(a.url, "queue.console.a").start()
        receivers.append(rx_a)
        assert rx_a.attached.wait(10)
        wait_until(lambda: "Router.C" in a.state().get("addresses", {})
                   .get("queue.console", []), 10, "A to learn of the consumer on C")
        tx = Sender(a.url, "queue.console", 5).start()
        tx.join(30)
        assert [tx.outcomes[i] for i in range(5)] == ["accepted"] * 5
        wait_until(lambda: len(rx.messages) == 5, 10, "the 5 messages at C")

        shutil.rmtree(ARTEFACTS, ignore_errors=True)
        os.makedirs(ARTEFACTS)
        profile = tempfile.mkdtemp(prefix="bote-chromium-")
        driver = subprocess.Popen(
            ["node", os.path.join(HERE, "drive.mjs"), a.http_url + "/", "queue.console",
             ARTEFACTS, profile],
            cwd=HERE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)

        first = json.loads(driver.stdout.readline() or "null")
        assert first is not None, driver.stderr.read()
        drawn, selected = first["drawn"], first["selected"]
        assert first["errors"] == []
        assert sorted(r["id"] for r in drawn["routers"]) == ["Router.A", "Router.B", "Router.C"]
        assert sorted((l["key"], l["cost"]) for l in drawn["links"]) == [
            ("Router.A|Router.B", 1), ("Router.A|Router.C", 5), ("Router.B|Router.C", 1)]
        assert "queue.console" in drawn["addresses"]
        routers_now = {r["id"]: r for r in selected["routers"]}
        assert "consumer" in routers_now["Router.C"]["cls"].split()
        assert "consumer" not in routers_now["Router.B"]["cls"].split()
        assert routers_now["Router.A"]["counts"] == "1 clients · 1 addr"
        assert routers_now["Router.B"]["counts"] == "– clients · 0 addr"
        assert routers_now["Router.C"]["counts"] == "– clients · 1 addr"
        path = sorted(l["key"] for l in selected["links"] if "path" in l["cls"].split())
        assert path == ["Router.A|Router.B", "Router.B|Router.C"]
        # A sent the 5 messages to B, none straight to C.
        assert selected["traffic"] == {"Router.A|Router.B": "5 msgs", "Router.A|Router.C": "0 msgs"}
        assert "closest: Router.C (cost 2) via Router.A → Router.B → Router.C" in selected["detail"]

        killed_at = time.monotonic()
        b.proc.kill()
        b.proc.wait()
        driver.stdin.write("killed\n")
        driver.stdin.flush()
        second = json.loads(driver.stdout.readline() or "null")
        assert second is not None, driver.stderr.read()
        print(f"B killed: off the graph {second['seconds']:.2f} s after the page was told, "
              f"{time.monotonic() - killed_at:.2f} s after the kill")
        after = second["after"]
        assert sorted(r["id"] for r in after["routers"]) == ["Router.A", "Router.C"]
        assert [(l["key"], l["cost"], "path" in l["cls"]) for l in after["links"]] == [
            ("Router.A|Router.C", 5, True)]
        assert second["seconds"] < 5
        third = json.loads(driver.stdout.readline() or "null")
        assert third is not None, driver.stderr.read()
        assert third["errors"] == []
        hundred = third["hundred"]
        assert (hundred["routers"], hundred["links"]) == (100, 105)
        # R000 -3- R050 (the chord) is cheaper than 50 hops of the ring.
        assert hundred["path"] == ["R000|R050"]
        assert "closest: R050 (cost 3) via R000 → R050" in hundred["detail"]
        driver.stdin.close()
        assert driver.wait(30) == 0, driver.stderr.read()
        for shot in ("console-mesh.png", "console-address.png", "console-after-kill.png",
                 "console-100-routers.png"):
            assert os.path.getsize(os.path.join(ARTEFACTS, shot)) > 10_000
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        for r in receivers + ([rx] if rx is not None else []):
            r.stop_requested.set()
            r.join()
        for r in (a, c):
            assert r.stop() == 0, r.log()
        if b.proc.poll() is None:
            b.stop()
