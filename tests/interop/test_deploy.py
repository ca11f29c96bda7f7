"""The deployment files: the plain Kubernetes manifests (deploy/k8s) and
the Helm chart (deploy/helm/bote) validate offline against the Kubernetes
schemas (`kubernetes-validate --strict`); the chart renders with `helm
template` when a helm binary is at hand ($HELM or PATH; skipped otherwise);
and the environment each manifest gives a pod makes `botectl
config-from-env` write a configuration boted accepts, wired by ordinal."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, boted_path

K8S = os.path.join(ROOT, "deploy", "k8s", "bote.yaml")
CHART = os.path.join(ROOT, "deploy", "helm", "bote")


def validate(*paths):
    exe = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    if not os.path.exists(exe):
        pytest.fail("kubernetes-validate not installed in the venv (scripts/test installs it)")
    return subprocess.run([exe, "--strict", *paths], capture_output=True, text=True, timeout=120)


def botectl_path():
    return os.environ.get("BOTECTL") or os.path.join(ROOT, "target", "debug", "botectl")


def test_plain_manifests_validate_strictly():
    r = validate(K8S)
    assert r.returncode == 0, r.stdout + r.stderr
    for kind in ["service/bote-mesh", "service/bote", "statefulset/bote", "poddisruptionbudget/bote"]:
        assert f"passed for resource {kind}" in r.stdout, r.stdout


def test_the_validator_rejects_an_unknown_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(open(K8S).read().replace("publishNotReadyAddresses: true",
                                            "publishNotReadyAddresses: true\n  publishEverything: true"))
    r = validate(str(bad))
    assert r.returncode != 0 and "publishEverything" in r.stdout + r.stderr


def helm():
    path = os.environ.get("HELM") or shutil.which("helm")
    if not path:
        pytest.skip("no helm binary ($HELM or PATH): the chart is not rendered here")
    return path


@pytest.mark.parametrize("values", [[], ["--set", "replicas=5,degree=2,tracing.endpoint=http://otel:4317,"
                                             "tls.enabled=true,tls.clientSecret=c,tls.interRouterSecret=i"]])
def test_helm_chart_renders_and_validates(tmp_path, values):
    r = subprocess.run([helm(), "template", "bote", CHART, *values], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "rendered.yaml"
    out.write_text(r.stdout)
    v = validate(str(out))
    assert v.returncode == 0, v.stdout + v.stderr
    assert "publishNotReadyAddresses: true" in r.stdout
    if values:
        assert 'name: BOTE_MESH_DEGREE\n              value: "2"' in r.stdout
        assert "replicas: 5" in r.stdout and "secretName: i" in r.stdout


def manifest_env():
    """The literal BOTE_* values of the StatefulSet's container."""
    import yaml
    docs = list(yaml.safe_load_all(open(K8S)))
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    env = sts["spec"]["template"]["spec"]["containers"][0]["env"]
    return sts, {e["name"]: e["value"] for e in env if "value" in e}


def test_each_pod_of_the_statefulset_gets_a_valid_config_wired_by_ordinal(tmp_path):
    sts, env = manifest_env()
    replicas = sts["spec"]["replicas"]
    service = sts["spec"]["serviceName"]
    for ordinal in range(replicas):
        pod_env = dict(env, BOTE_ROUTER_ID=f"bote-{ordinal}", BOTE_NAMESPACE="prod", PATH=os.environ["PATH"])
        r = subprocess.run([botectl_path(), "config-from-env"], capture_output=True, text=True, env=pod_env,
                           timeout=30)
        assert r.returncode == 0, r.stderr
        config = tmp_path / f"bote-{ordinal}.toml"
        config.write_text(r.stdout)
        check = subprocess.run([boted_path(), "--check-config", str(config)], capture_output=True, text=True,
                               timeout=30)
        assert check.returncode == 0, check.stderr + r.stdout
        assert f'id = "bote-{ordinal}"' in r.stdout
        # degree 0: a full mesh, router N dials every i < N.
        dialled = [f"bote-{i}.{service}.prod.svc" for i in range(ordinal)]
        assert r.stdout.count("[[connector]]") == ordinal
        for host in dialled:
            assert f'host = "{host}"\nport = 55672' in r.stdout


def test_tls_secrets_become_an_amqps_listener_and_mutual_tls_between_pods(tmp_path):
    """The chart's TLS Secrets (tls.crt, tls.key, ca.crt, as Kubernetes
    mounts them) through BOTE_TLS_DIR and BOTE_INTER_ROUTER_TLS_DIR: boted
    accepts the configuration, which reads the files, and the connectors to
    the pod's predecessors are mutual TLS."""
    from conftest import make_certs
    certs = make_certs()
    secret = tmp_path / "secret"
    secret.mkdir()
    for src, dst in [("server.pem", "tls.crt"), ("server-key.pem", "tls.key"), ("ca.pem", "ca.crt")]:
        shutil.copy(os.path.join(certs, src), secret / dst)
    shutil.rmtree(certs, ignore_errors=True)
    _, env = manifest_env()
    pod_env = dict(env, BOTE_ROUTER_ID="bote-2", BOTE_TLS_DIR=str(secret),
                   BOTE_INTER_ROUTER_TLS_DIR=str(secret), PATH=os.environ["PATH"])
    r = subprocess.run([botectl_path(), "config-from-env"], capture_output=True, text=True, env=pod_env,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    config = tmp_path / "bote-2.toml"
    config.write_text(r.stdout)
    check = subprocess.run([boted_path(), "--check-config", str(config)], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stderr + r.stdout
    assert r.stdout.count("require-client-cert = true") == 1  # the inter-router listener
    assert r.stdout.count(f'tls-cert-file = "{secret}/tls.crt"') == 2 + r.stdout.count("[[connector]]")
    # A key file that is not there is refused, naming it.
    (secret / "tls.key").unlink()
    check = subprocess.run([boted_path(), "--check-config", str(config)], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode != 0 and "tls.key" in check.stderr, check.stderr


@pytest.mark.parametrize("persistence", [True, False])
def test_chart_with_mqtt_gives_each_router_a_data_dir_on_a_volume(tmp_path, persistence):
    """mqtt.enabled: the listener on the pod and the client Service, and
    [router] data-dir on a volume mounted where BOTE_DATA_DIR points (a
    PersistentVolumeClaim per pod, or an emptyDir without persistence);
    the pod's environment makes a configuration boted accepts."""
    import yaml
    values = f"mqtt.enabled=true,persistence.enabled={str(persistence).lower()},persistence.size=2Gi"
    r = subprocess.run([helm(), "template", "bote", CHART, "--set", values], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "rendered.yaml"
    out.write_text(r.stdout)
    v = validate(str(out))
    assert v.returncode == 0, v.stdout + v.stderr
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    client = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "bote")
    assert {"name": "mqtt", "port": 1883, "targetPort": "mqtt"} in client["spec"]["ports"]
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env["BOTE_MQTT_LISTEN"] == "0.0.0.0:1883"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == env["BOTE_DATA_DIR"]
    claims = [c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])]
    volumes = {v["name"]: v for v in pod["volumes"]}
    if persistence:
        assert claims == ["data"] and "data" not in volumes
        assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "2Gi"
    else:
        assert claims == [] and volumes["data"] == {"name": "data", "emptyDir": {}}
    pod_env = dict(env, BOTE_ROUTER_ID="bote-1", PATH=os.environ["PATH"])
    c = subprocess.run([botectl_path(), "config-from-env"], capture_output=True, text=True, env=pod_env,
                       timeout=30)
    assert c.returncode == 0, c.stderr
    assert 'data-dir = "/var/lib/bote"' in c.stdout and 'protocol = "mqtt"' in c.stdout
    config = tmp_path / "bote-1.toml"
    config.write_text(c.stdout)
    check = subprocess.run([boted_path(), "--check-config", str(config)], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stderr + c.stdout
