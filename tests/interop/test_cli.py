"""`boted` on the command line: configuration checks name the file, the line
and the key; no arguments runs the embedded default."""

import os
import subprocess
import tempfile

from conftest import ROOT, boted_path


def _check(text):
    d = tempfile.mkdtemp(prefix="bote-cli-")
    path = os.path.join(d, "bote.toml")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([boted_path(), "--check-config", path], capture_output=True, text=True, timeout=30)
    return p, path


def test_check_config_accepts_the_shipped_example():
    example = os.path.join(ROOT, "node", "examples", "bote.toml")
    p = subprocess.run([boted_path(), "--check-config", example], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "valid" in p.stdout


def test_unknown_key_names_file_line_and_key():
    p, path = _check('[router]\nid = "R"\n\n[[listener]]\nport = 5672\nlinkCapcity = 10\n')
    assert p.returncode == 1
    assert f"{os.path.basename(path)}:6" in p.stderr, p.stderr
    assert "linkCapcity" in p.stderr, p.stderr


def test_bad_distribution_value_names_file_line_and_value():
    p, path = _check('[[address]]\nprefix = "a"\ndistribution = "fastest"\n')
    assert p.returncode == 1
    assert f"{os.path.basename(path)}:3" in p.stderr, p.stderr
    assert "fastest" in p.stderr and "distribution" in p.stderr, p.stderr


def test_a_bad_config_does_not_start_the_router():
    d = tempfile.mkdtemp(prefix="bote-cli-")
    path = os.path.join(d, "bote.toml")
    with open(path, "w") as f:
        f.write('[[listener]]\nhost = "127.0.0.1"\nport = 0\nmax-frame-size = 100\n')
    p = subprocess.run([boted_path(), "--config", path], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "max-frame-size" in p.stderr and "bote.toml:4" in p.stderr, p.stderr


def test_boted_with_no_arguments_serves_a_stock_proton_client():
    """`boted` alone: the embedded default config, AMQP on 0.0.0.0:5672."""
    import signal
    import socket
    import threading

    import pytest
    from proton import Message

    from clients import Receiver, Sender
    from conftest import wait_until

    probe = socket.socket()
    try:
        probe.bind(("0.0.0.0", 5672))
    except OSError:
        pytest.skip("port 5672 is taken on this machine")
    finally:
        probe.close()
    proc = subprocess.Popen([boted_path()], stderr=subprocess.PIPE, text=True, cwd=tempfile.mkdtemp())
    lines = []

    def pump():
        for line in proc.stderr:
            lines.append(line)

    threading.Thread(target=pump, daemon=True).start()

    def accepting():
        # Without arguments there is no state file to wait on: the router
        # is up once port 5672 takes a connection.
        try:
            socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
            return True
        except OSError:
            return proc.poll() is not None
    try:
        wait_until(accepting, 20, "boted to accept on port 5672")
        assert proc.poll() is None, "".join(lines)
        # The log tells a human where it listens.
        wait_until(lambda: any("0.0.0.0:5672" in l for l in lines), 5, "the listening line")
        url = "amqp://127.0.0.1:5672"
        rx = Receiver(url, "examples", expect=10).start()
        assert rx.attached.wait(10)
        tx = Sender(url, "examples", [Message(body={"sequence": i}) for i in range(10)]).start().join()
        rx.join()
        assert tx.counts() == {"accepted": 10}
        assert [m.body["sequence"] for m in rx.messages] == list(range(10))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, "".join(lines)
