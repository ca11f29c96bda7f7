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
