"""`shipyard export kubernetes`: the manifests rendered from a spec, and the kustomize base.

No Kubernetes cluster can run here, so nothing is applied: every manifest is validated
offline against the Kubernetes schemas of two versions (kubernetes-validate ships them), the
base is built by the real kustomize (`kubectl kustomize`, installed by scripts/setup) and its
output validated the same way, and the pod's nginx config passes the real `nginx -t`.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shipyard.cli.commands import main
from shipyard.errors import SpecError
from shipyard.project.spec_file import load_spec
from shipyard.spec.model import Spec, parse_spec
from shipyard.targets.export import kubernetes as k8s
from shipyard.targets.export import nginx, workloads
from tlskit import TestCA

ROOT = Path(__file__).resolve().parents[2]
# The oldest and the newest Kubernetes whose schemas the pinned kubernetes-validate ships.
VERSIONS = ("1.31.0", "1.37.0")
IMAGE = "registry.example/shop:3f2a9c"
SECRET_VALUE = "s3cret-value-never-shown"

Manifest = dict[str, Any]


def full_spec() -> Spec:
    """Processes, persistent directories, a release command, TLS and an autoscaler."""
    return parse_spec(
        {
            "name": "shop",
            "entry": "shop.app:app",
            "domains": ["shop.example.com", "www.shop.example.com"],
            "release": "flask --app shop.app:app db upgrade",
            "persistent": ["uploads", "var/cache"],
            "static": {"/assets": "shop/static"},
            "env": {"SHOP_MODE": "production"},
            "secrets": {"SHOP_TOKEN": "required", "SHOP_KEY": "generate"},
            "healthcheck": {"path": "/healthz"},
            "processes": {
                "worker": {"command": "celery -A shop.tasks worker", "count": 3},
                "beat_clock": "celery -A shop.tasks beat",
            },
            "kubernetes": {
                "ingress_class": "nginx",
                "cluster_issuer": "letsencrypt",
                "storage_class": "fast",
                "storage_size": "5Gi",
                "storage_access": "ReadWriteMany",
                "resources": {
                    "cpu": "500m",
                    "memory": "1Gi",
                    "cpu_limit": "2",
                    "memory_limit": "2Gi",
                },
                "autoscale": {"min": 3, "max": 12, "cpu": 60},
            },
        },
        Path("shipyard.toml"),
    )


def specs() -> dict[str, Spec]:
    return {
        "flask-factory": load_spec(ROOT / "examples" / "flask-factory"),
        "django-site": load_spec(ROOT / "examples" / "django-site"),
        "asgi-app": load_spec(ROOT / "examples" / "asgi-app"),
        "full": full_spec(),
    }


SPECS = specs()


def manifests(spec: Spec, tree: bool = False) -> dict[str, Manifest]:
    return k8s.all_manifests(spec, IMAGE, tree, has_secrets=bool(spec.secrets))


def by_kind(found: dict[str, Manifest], kind: str) -> list[Manifest]:
    return [m for m in found.values() if m["kind"] == kind]


def web(found: dict[str, Manifest]) -> Manifest:
    return found["deployment-web.yaml"]


def container(deployment: Manifest, name: str) -> Manifest:
    pod = deployment["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == name)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_manifest_is_valid_for_the_kubernetes_version(name: str, version: str) -> None:
    rendered = k8s.render(SPECS[name], IMAGE, False, None)
    for file in [*rendered.resources, "kustomization.yaml"]:
        assert file in rendered.files
    for file in rendered.resources:
        document = yaml.safe_load(rendered.files[file])
        kubernetes_validate.validate(document, version, strict=True)


def test_the_validation_fails_on_a_broken_manifest() -> None:
    """The check that the manifests pass can fail: a misspelt field is refused."""
    deployment = web(manifests(SPECS["full"]))
    deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailabel"] = 0
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_web_deployment_rolls_with_no_pod_missing_and_drains(name: str) -> None:
    spec = SPECS[name]
    deployment = web(manifests(spec))
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    app = container(deployment, "web")
    assert app["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(workloads.DRAIN_SECONDS)]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= workloads.DRAIN_SECONDS + spec.server.graceful_timeout
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert app[probe]["httpGet"]["path"] == spec.healthcheck.request_path
        assert app[probe]["httpGet"]["port"] in ("app", "http")


def test_a_check_with_no_path_is_the_port_answering() -> None:
    """The spec's default check takes any answer below 500; the kubelet only 200-399."""
    spec = parse_spec({"name": "bare", "entry": "bare:app"}, Path("shipyard.toml"))
    app = container(web(manifests(spec)), "web")
    assert app["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert "httpGet" not in app["livenessProbe"]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_pods_run_as_non_root_on_a_read_only_root_with_writable_mounts(name: str) -> None:
    spec = SPECS[name]
    found = manifests(spec)
    for manifest in [*by_kind(found, "Deployment"), *by_kind(found, "Job")]:
        pod = manifest["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        volumes = {v["name"] for v in pod["volumes"]}
        for box in [*pod["containers"], *pod.get("initContainers", [])]:
            assert box["securityContext"]["readOnlyRootFilesystem"] is True
            assert box["securityContext"]["allowPrivilegeEscalation"] is False
            assert {m["name"] for m in box["volumeMounts"]} <= volumes
            paths = {m["mountPath"] for m in box["volumeMounts"]}
            if box["name"] not in ("static",):
                assert "/tmp" in paths
    app = container(web(found), "web")
    mounts = {m["mountPath"]: m for m in app["volumeMounts"]}
    assert "/app/venv/var" in mounts  # Flask's instance folder
    for directory in spec.persistent:
        mount = mounts[f"/app/{directory}"]
        assert mount["name"] == "data" and mount["subPath"] == f"data/{directory}"


def test_the_server_listens_on_tcp_in_the_pod() -> None:
    app = container(web(manifests(SPECS["flask-factory"])), "web")
    assert app["command"] == [
        "/app/venv/bin/gunicorn",
        "--config",
        "/app/gunicorn.conf.py",
        "--workers",
        "2",
        "--bind",
        "0.0.0.0:8000",
        "flaskr:create_app()",
    ]


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("uwsgi", ["--http-socket", "0.0.0.0:8000"]),
        ("uvicorn", ["--workers", "3", "--host", "0.0.0.0", "--port", "8000"]),
        ("granian", ["--workers", "3", "--host", "0.0.0.0", "--port", "8000"]),
        ("gunicorn-asgi", ["--bind", "0.0.0.0:8000"]),
    ],
)
def test_every_server_binds_the_pods_port(server: str, expected: list[str]) -> None:
    """Workers unset: 2 x the pod's CPU limit (1 by default) + 1."""
    spec = parse_spec(
        {"name": "app", "entry": "app:app", "server": {"type": server}}, Path("shipyard.toml")
    )
    argv = container(web(manifests(spec)), "web")["command"]
    assert argv[0].startswith("/app/venv/bin/")
    assert any(argv[i : i + len(expected)] == expected for i in range(len(argv)))
    assert not any(word.startswith("unix:") or word.endswith(".sock") for word in argv)
    assert workloads.web_workers(spec) == 3


def test_each_process_is_a_deployment_of_its_own() -> None:
    spec = SPECS["full"]
    found = manifests(spec)
    worker = found["deployment-worker.yaml"]
    assert worker["metadata"]["name"] == "shop-worker"
    assert worker["spec"]["replicas"] == 3
    assert container(worker, "worker")["command"] == ["celery", "-A", "shop.tasks", "worker"]
    assert worker["spec"]["minReadySeconds"] == spec.processes["worker"].startsecs
    beat = found["deployment-beat-clock.yaml"]  # '_' is no part of a Kubernetes name
    assert beat["spec"]["replicas"] == 1
    selectors = {
        d["metadata"]["name"]: d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for d in by_kind(found, "Deployment")
    }
    assert len(set(selectors.values())) == len(selectors) == 3


def test_the_release_command_is_a_job_named_for_its_image() -> None:
    spec = SPECS["full"]
    job = manifests(spec)["job-release.yaml"]
    assert job["kind"] == "Job" and job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["command"] == ["flask", "--app", "shop.app:app", "db", "upgrade"]
    other = k8s.all_manifests(spec, IMAGE + "1", False, True)["job-release.yaml"]
    assert other["metadata"]["name"] != job["metadata"]["name"]
    assert "job-release.yaml" not in manifests(SPECS["flask-factory"])  # no release command


def test_a_volume_for_persistent_directories_only_when_there_are_some() -> None:
    claim = manifests(SPECS["full"])["pvc.yaml"]
    assert claim["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "5Gi"}},
        "storageClassName": "fast",
    }
    assert "pvc.yaml" not in manifests(SPECS["flask-factory"])
    assert "pvc.yaml" in manifests(SPECS["django-site"])  # its uploads and SQLite files


def test_an_autoscaler_only_when_asked_and_then_it_owns_the_count() -> None:
    full = manifests(SPECS["full"])
    hpa = full["hpa.yaml"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    assert hpa["spec"]["scaleTargetRef"]["name"] == web(full)["metadata"]["name"]
    assert "replicas" not in web(full)["spec"]
    plain = manifests(SPECS["flask-factory"])
    assert "hpa.yaml" not in plain and web(plain)["spec"]["replicas"] == 2


def test_the_ingress_serves_the_domains_over_tls() -> None:
    ingress = manifests(SPECS["full"])["ingress.yaml"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"hosts": ["shop.example.com", "www.shop.example.com"], "secretName": "shop-tls"}
    ]
    assert [r["host"] for r in ingress["spec"]["rules"]] == ingress["spec"]["tls"][0]["hosts"]
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    plain = manifests(SPECS["flask-factory"])["ingress.yaml"]
    assert "tls" not in plain["spec"] and "host" not in plain["spec"]["rules"][0]


def test_resources_come_from_the_spec() -> None:
    app = container(web(manifests(SPECS["full"])), "web")
    assert app["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    assert (
        "--workers" in app["command"]
        and app["command"][app["command"].index("--workers") + 1] == "5"
    )


def test_plain_variables_go_to_the_config_map_and_secrets_nowhere_but_their_file() -> None:
    spec = SPECS["full"]
    values = {"SHOP_TOKEN": SECRET_VALUE, "SHOP_KEY": "generated-" + SECRET_VALUE}
    rendered = k8s.render(spec, IMAGE, False, values)
    assert "SHOP_MODE=production\n" in rendered.files[k8s.CONFIG_ENV]
    assert (
        rendered.secret_file is not None and f"SHOP_TOKEN={SECRET_VALUE}\n" in rendered.secret_file
    )
    for name, text in rendered.files.items():
        assert SECRET_VALUE not in text, name
    kustomization = yaml.safe_load(rendered.files["kustomization.yaml"])
    assert kustomization["secretGenerator"] == [
        {"name": "shop-secrets", "env": "secret.env", "type": "Opaque"}
    ]


def test_the_django_project_gets_its_variables_with_the_images_paths() -> None:
    env = k8s.config_env(SPECS["django-site"], tree=True)
    assert env["DJANGO_SETTINGS_MODULE"] == "shipyard_django_settings"
    assert env["DJANGO_DATA_DIR"] == "/data/data" and env["DJANGO_MEDIA_ROOT"] == "/data/media"
    assert "localhost" in env["DJANGO_ALLOWED_HOSTS"].split(",")  # the probes' Host
    assert env["PYTHONPATH"] == "/app/src"
    app = container(web(manifests(SPECS["django-site"], tree=True)), "web")
    assert app["workingDir"] == "/app/src"
    assert {"name": "data", "mountPath": "/data"} in app["volumeMounts"]


def test_a_persistent_file_outside_django_is_refused_with_a_way_out() -> None:
    spec = parse_spec(
        {"name": "app", "entry": "app:app", "persistent_files": ["db.sqlite3"]},
        Path("shipyard.toml"),
    )
    with pytest.raises(SpecError) as caught:
        k8s.render(spec, IMAGE, False, None)
    assert "db.sqlite3" in caught.value.message and "persistent" in (caught.value.hint or "")


def test_a_variable_on_two_lines_is_refused() -> None:
    spec = parse_spec(
        {"name": "app", "entry": "app:app", "env": {"PEM": "a\nb"}}, Path("shipyard.toml")
    )
    with pytest.raises(SpecError, match="PEM holds a line break"):
        k8s.render(spec, IMAGE, False, None)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"tls_secret": "shop-cert"}, "set `domains`"),
        ({"autoscale": {"min": 5, "max": 2}}, "below min"),
        ({"resources": {"memory": "lots"}}, "not a Kubernetes quantity"),
        ({"resources": {"memory": "1Gi"}}, "more than memory_limit = '512Mi'"),
        ({"resources": {"cpu": "1500m", "cpu_limit": "1"}}, "more than cpu_limit"),
        ({"ingress_class": "Not_A_Name"}, "not a Kubernetes object name"),
        ({"replicas": "3"}, "kubernetes.replicas"),
        ({"replica": 3}, "unknown key"),
    ],
)
def test_bad_kubernetes_tables_are_named(table: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"name": "app", "entry": "app:app", "kubernetes": table}, Path("shipyard.toml"))
    assert message in caught.value.message and "kubernetes." in caught.value.message


@pytest.mark.parametrize("name", ["flask-factory", "django-site", "full"])
def test_the_pods_nginx_config_passes_nginx_t(name: str, tmp_path: Path) -> None:
    """The real nginx reads the config nginx's image will (mime.types where Debian has it)."""
    spec = SPECS[name]
    assert nginx.needed(spec)
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx.nginx_conf(spec, 8000))
    done = subprocess.run(
        ["nginx", "-t", "-p", f"{tmp_path}/", "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    text = conf.read_text()
    for location in nginx.locations(spec):
        assert f"location {location.prefix} {{" in text


def test_the_pods_nginx_serves_the_static_directories_and_uploads() -> None:
    prefixes = {loc.prefix: loc for loc in nginx.locations(SPECS["django-site"])}
    assert prefixes["/static/"].directory == "/static/django-static/"
    assert prefixes["/media/"].uploads and prefixes["/media/"].directory == "/data/media/"
    full = {loc.prefix: loc.directory for loc in nginx.locations(SPECS["full"])}
    assert full == {"/assets/": "/static/0-static/"}
    service = manifests(SPECS["full"])["service.yaml"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert container(web(manifests(SPECS["full"])), "nginx")["ports"][0]["name"] == "http"


# --- the kustomize base, built by the real kustomize ------------------------------------------


def kustomize(directory: Path) -> list[Manifest]:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "scripts/setup --test installs kubectl (kubernetes-client)"
    done = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_kustomize_builds_the_base_into_valid_manifests(name: str, tmp_path: Path) -> None:
    spec = SPECS[name]
    values = dict.fromkeys(spec.secrets, SECRET_VALUE)
    rendered = k8s.render(spec, IMAGE, False, values)
    for file, text in rendered.files.items():
        (tmp_path / file).write_text(text)
    if rendered.secret_file is not None:
        (tmp_path / k8s.SECRET_ENV).write_text(rendered.secret_file)
    built = kustomize(tmp_path)
    for version in VERSIONS:
        for document in built:
            kubernetes_validate.validate(document, version, strict=True)
    kinds = sorted(d["kind"] for d in built)
    expected = sorted(
        [yaml.safe_load(rendered.files[f])["kind"] for f in rendered.resources]
        + ["ConfigMap"] * (2 if nginx.needed(spec) else 1)
        + (["Secret"] if spec.secrets else [])
    )
    assert kinds == expected
    config = next(d for d in built if d["kind"] == "ConfigMap" and "-env-" in d["metadata"]["name"])
    deployment = next(
        d for d in built if d["kind"] == "Deployment" and d["metadata"]["name"] == spec.name
    )
    refs = container(deployment, "web")["envFrom"]
    assert refs[0]["configMapRef"]["name"] == config["metadata"]["name"]  # the hashed name


# --- the command ------------------------------------------------------------------------------


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out + err


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "shop"
    shutil.copytree(ROOT / "examples" / "flask-factory", root)
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SHIPYARD_CACHE", str(tmp_path / "cache"))
    return root


def test_the_command_writes_the_targets_secrets_privately_and_never_shows_them(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run_cli(
        ["config", "set", "--dir", str(project), f"FLASKR_SECRET_KEY={SECRET_VALUE}"], capsys
    )
    assert code == 0
    code, output = run_cli(
        ["export", "kubernetes", str(project), "--target", "local", "--image", IMAGE],
        capsys,
    )
    assert code == 0, output
    assert SECRET_VALUE not in output and "secret.env" in output and "kubectl apply -k" in output
    out = project / "deploy" / "kubernetes"
    secret = out / k8s.SECRET_ENV
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert secret.read_text() == f"FLASKR_SECRET_KEY={SECRET_VALUE}\n"
    for path in out.iterdir():
        if path != secret:
            assert SECRET_VALUE not in path.read_text(), path
    listed = yaml.safe_load((out / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(
        p.name for p in out.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    assert (
        container(yaml.safe_load((out / "deployment-web.yaml").read_text()), "web")["image"]
        == IMAGE
    )
    assert [d["kind"] for d in kustomize(out)].count("Secret") == 1


def test_without_a_target_the_secrets_file_is_the_users_to_write(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = run_cli(["export", "kubernetes", str(project)], capsys)
    assert code == 0, output
    out = project / "deploy" / "kubernetes"
    assert not (out / k8s.SECRET_ENV).exists()
    assert "FLASKR_SECRET_KEY=\n" in (out / k8s.SECRET_EXAMPLE).read_text()
    assert "secret.env.example" in output
    image = container(yaml.safe_load((out / "deployment-web.yaml").read_text()), "web")["image"]
    assert image == "flaskr:latest"
    # the user writes it; a second export keeps it (mode 0600)
    (out / k8s.SECRET_ENV).write_text(f"FLASKR_SECRET_KEY={SECRET_VALUE}\n")
    code, output = run_cli(["export", "kubernetes", str(project)], capsys)
    assert code == 2 and "not empty" in output and "--force" in output
    code, output = run_cli(["export", "kubernetes", str(project), "--force"], capsys)
    assert code == 0 and "kept" in output and SECRET_VALUE not in output
    assert (out / k8s.SECRET_ENV).read_text() == f"FLASKR_SECRET_KEY={SECRET_VALUE}\n"
    assert stat.S_IMODE((out / k8s.SECRET_ENV).stat().st_mode) == 0o600


def test_a_target_missing_a_required_secret_is_named_and_nothing_is_written(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = project / "shipyard.toml"
    spec.write_text(spec.read_text().replace('"generate"', '"required"'))
    code, output = run_cli(
        [
            "export",
            "kubernetes",
            str(project),
            "--target",
            "local",
            "-o",
            str(project / "k"),
        ],
        capsys,
    )
    assert code == 2 and "FLASKR_SECRET_KEY" in output and "config set" in output
    assert not (project / "k").exists()


def test_a_generated_secret_gets_a_value_that_is_not_shown(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = project / "k8s"
    code, output = run_cli(
        ["export", "kubernetes", str(project), "-t", "local", "-o", str(out)], capsys
    )
    assert code == 0 and "generated FLASKR_SECRET_KEY" in output
    value = (out / k8s.SECRET_ENV).read_text().strip().partition("=")[2]
    assert len(value) >= 32 and value not in output
    # exported again: the value generated the first time stays (a new key would end sessions)
    code, output = run_cli(
        ["export", "kubernetes", str(project), "-t", "local", "-o", str(out), "--force"],
        capsys,
    )
    assert code == 0 and "generated FLASKR" not in output and value not in output
    assert (out / k8s.SECRET_ENV).read_text() == f"FLASKR_SECRET_KEY={value}\n"


def test_the_export_group_lists_its_engines(capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run_cli(["export", "--help"], capsys)
    assert code == 0 and "kubernetes" in output


def test_a_nul_in_the_output_path_is_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = run_cli(["export", "kubernetes", str(project), "-o", "out\x00put"], capsys)
    assert code == 2 and "NUL" in output


def test_the_pods_nginx_names_static_directories_as_a_release_holds_them(tmp_path: Path) -> None:
    """The init container copies the image's /app/static as the build laid it out."""
    from shipyard.host.layout import HostLayout
    from shipyard.host.release import planned_static_dirs

    spec = parse_spec(
        {"name": "app", "entry": "app:app", "static": {"/b": "web/b", "/a": "x/assets"}},
        Path("shipyard.toml"),
    )
    planned = planned_static_dirs(spec, HostLayout(tmp_path).app("app"), "r1", None)
    served = {loc.prefix.rstrip("/"): loc.directory for loc in nginx.locations(spec)}
    assert served == {p: f"/static/{d.name}/" for p, d in planned.items()}


def _with_tls(project: Path, table: str) -> None:
    spec = project / "shipyard.toml"
    spec.write_text('domains = ["shop.example.com"]\n' + spec.read_text() + "\n" + table)


def test_tls_files_become_the_ingress_certificate_and_the_key_stays_private(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issued = TestCA(tmp_path).issue(["shop.example.com"])
    _with_tls(
        project,
        f'[tls]\nmode = "files"\ncertificate = "{issued.certificate}"\nkey = "{issued.key}"\n',
    )
    code, output = run_cli(["export", "kubernetes", str(project), "--image", IMAGE], capsys)
    assert code == 0, output
    out = project / "deploy" / "kubernetes"
    key = issued.key.read_text()
    assert (out / k8s.TLS_CERT).read_text() == issued.certificate.read_text()
    assert (out / k8s.TLS_KEY).read_text() == key
    assert stat.S_IMODE((out / k8s.TLS_KEY).stat().st_mode) == 0o600
    assert key.strip().splitlines()[1] not in output
    for path in out.iterdir():
        if path.name != k8s.TLS_KEY:
            assert key.strip().splitlines()[1] not in path.read_text(), path
    ingress = yaml.safe_load((out / "ingress.yaml").read_text())
    assert ingress["spec"]["tls"] == [{"hosts": ["shop.example.com"], "secretName": "flaskr-tls"}]
    (out / k8s.SECRET_ENV).write_text("FLASKR_SECRET_KEY=the-users-own\n")  # theirs to write
    built = kustomize(out)
    [tls] = [d for d in built if d["kind"] == "Secret" and d["type"] == "kubernetes.io/tls"]
    assert set(tls["data"]) == {"tls.crt", "tls.key"}
    [ingress] = [d for d in built if d["kind"] == "Ingress"]
    assert ingress["spec"]["tls"][0]["secretName"] == tls["metadata"]["name"]  # hash suffixed
    for version in VERSIONS:
        for document in built:
            kubernetes_validate.validate(document, version, strict=True)

    # without [tls] any more, the files of the earlier export go with --force
    (project / "shipyard.toml").write_text(
        (project / "shipyard.toml").read_text().split("[tls]")[0]
    )
    code, output = run_cli(["export", "kubernetes", str(project), "--force"], capsys)
    assert code == 0, output
    assert not (out / k8s.TLS_KEY).exists() and not (out / k8s.TLS_CERT).exists()
    assert "tls" not in yaml.safe_load((out / "ingress.yaml").read_text())["spec"]


def test_tls_by_acme_needs_the_clusters_issuer(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _with_tls(project, '[tls]\nmode = "acme"\nemail = "ops@example.com"\n')
    code, output = run_cli(["export", "kubernetes", str(project)], capsys)
    assert code == 1 and "cert-manager" in output and "kubernetes.cluster_issuer" in output
    assert "Traceback" not in output
    spec = project / "shipyard.toml"
    spec.write_text(
        spec.read_text().replace("[tls]", '[kubernetes]\ncluster_issuer = "le"\n\n[tls]')
    )
    code, output = run_cli(["export", "kubernetes", str(project)], capsys)
    assert code == 0, output
    ingress = yaml.safe_load((project / "deploy" / "kubernetes" / "ingress.yaml").read_text())
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "le"
    assert ingress["spec"]["tls"][0]["secretName"] == "flaskr-tls"
