"""The Helm chart, checked offline with Helm's own library: `helm lint --strict` and rendering under several
value sets (helm-python-sdk, Helm v4, in the tool virtualenv `make helm-tools` makes), every rendered manifest
validated by kubernetes-validate --strict against Kubernetes 1.30 and the newest schemas it ships, and the values
schema refusing a release without its database, object store or keys, or with values of the wrong type."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "mlgov"
TOOL_PY = ROOT / ".venv-helm" / "bin" / "python"
KUBE_VERSIONS = ["1.30.0", "latest"]

REQUIRED: dict[str, Any] = {
    "database": {"url": "postgresql+psycopg://mlgov:pw@db.example:5432/mlgov"},
    "s3": {"storeUrl": "s3://mlgov-artifacts/prod", "endpointUrl": "https://s3.example:8333",
           "accessKeyId": "AKIDEXAMPLE", "secretAccessKey": "wJalrXUtnFEMI/K7MDENG"},
    "keys": {"secretsKey": "Yk1Wb0t3c2FtcGxla2V5Zm9ydGVzdHNvbmx5MTIzNDU=", "auditKey": "a1" * 32},
}
FULL: dict[str, Any] = {
    **copy.deepcopy(REQUIRED),
    "ingress": {"enabled": True, "className": "nginx", "hosts": [{"host": "mlgov.example.com",
                "paths": [{"path": "/", "pathType": "Prefix"}]}],
                "tls": [{"secretName": "mlgov-tls", "hosts": ["mlgov.example.com"]}]},
    "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 8, "targetMemoryUtilizationPercentage": 80},
    "dask": {"enabled": True, "minRows": 1000000, "workers": {"replicas": 4, "threads": 2}},
    "networkPolicy": {"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}],
                      "apiIngressFrom": [{"namespaceSelector": {"matchLabels": {"name": "ingress-nginx"}}}]},
}
EXISTING: dict[str, Any] = {
    "database": {"existingSecret": "prod-db", "existingSecretKey": "url"},
    "s3": {"storeUrl": "s3://mlgov-artifacts", "existingSecret": "prod-s3"},
    "keys": {"existingSecret": "prod-keys"},
    "scheduler": {"enabled": False},
}
IRSA: dict[str, Any] = {
    **copy.deepcopy(REQUIRED),
    "s3": {"storeUrl": "s3://mlgov-artifacts", "useWorkloadIdentity": True},
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/mlgov"}},
}


EXTRA_ENV: dict[str, Any] = {
    **copy.deepcopy(REQUIRED),
    "config": {"extraEnv": {"MLGOV_AWS_ACCOUNT_ID": "123456789012", "MLGOV_LOG_SQL": "false"}},
}
# what an operator tried: two of the chart's secrets and one of its own settings through config.extraEnv
LEAKED_ENV = {"MLGOV_AUDIT_KEY": "LeakAuditKey1234567", "MLGOV_S3_SECRET_ACCESS_KEY": "LeakMe123",
              "MLGOV_STORE_URL": "s3://other"}
DASK_TLS: dict[str, Any] = {
    **copy.deepcopy(REQUIRED),
    "dask": {"externalScheduler": "tls://dask-scheduler.analytics:8786", "tls": {"existingSecret": "dask-client"}},
}
RENDERED = {"required": REQUIRED, "full": FULL, "existing": EXISTING, "irsa": IRSA, "extra env": EXTRA_ENV,
            "dask tls": DASK_TLS}


def without(values: dict[str, Any], key: str) -> dict[str, Any]:
    out = copy.deepcopy(values)
    del out[key]
    return out


def merged(values: dict[str, Any], **parts: Any) -> dict[str, Any]:
    out = copy.deepcopy(values)
    out.update(parts)
    return out


REJECTED: dict[str, dict[str, Any]] = {
    "no values at all": {},
    "no database": without(REQUIRED, "database"),
    "no s3": without(REQUIRED, "s3"),
    "no keys": without(REQUIRED, "keys"),
    "s3 without credentials": merged(REQUIRED, s3={"storeUrl": "s3://mlgov-artifacts"}),
    "a file store, not s3": merged(REQUIRED, s3={**REQUIRED["s3"], "storeUrl": "file:///data"}),
    "a non-PostgreSQL database": merged(REQUIRED, database={"url": "sqlite:///x.db"}),
    "replicas as a string": merged(REQUIRED, api={"replicas": "two"}),
    "workers as a boolean": merged(REQUIRED, api={"workers": True}),
    "a misspelt key": merged(REQUIRED, scheduler={"enable": False}),
    "a non-MLGOV extra variable": merged(REQUIRED, config={"extraEnv": {"PATH": "/evil"}}),
    "a non-string extra variable": merged(REQUIRED, config={"extraEnv": {"MLGOV_LOG_SQL": True}}),
    "chart secrets and settings in extraEnv": merged(REQUIRED, config={"extraEnv": LEAKED_ENV}),
    "the database URL in extraEnv": merged(EXISTING, config={"extraEnv": {
        "MLGOV_DATABASE_URL": "postgresql+psycopg://mlgov:pw@db.example/mlgov"}}),
    "ingress on without hosts": merged(REQUIRED, ingress={"enabled": True}),
    "a tls:// Dask scheduler without a client certificate": merged(
        REQUIRED, dask={"externalScheduler": "tls://dask-scheduler.analytics:8786"}),
    "an http:// Dask scheduler": merged(REQUIRED, dask={"externalScheduler": "http://dask-scheduler:8786"}),
    "a Dask scheduler without a port": merged(REQUIRED, dask={"externalScheduler": "tcp://dask-scheduler"}),
    "an audit key too short": merged(REQUIRED, keys={**REQUIRED["keys"], "auditKey": "short"}),
}


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    if not TOOL_PY.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{TOOL_PY} missing: `make test` runs `make helm-tools` first")
        pytest.skip("the Helm tool virtualenv is missing: run `make helm-tools`")
    cases = [{"name": n, "values": v} for n, v in
             [*RENDERED.items(), *REJECTED.items()]]
    request = {"chart": str(CHART), "kube_versions": KUBE_VERSIONS, "cases": cases}
    proc = subprocess.run([str(TOOL_PY), str(Path(__file__).with_name("helm_tool.py"))], input=json.dumps(request),
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    answer: dict[str, Any] = json.loads(proc.stdout)
    answer["by_name"] = {c["name"]: c for c in answer["cases"]}
    return answer


def docs(case: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {m["doc"]["metadata"]["name"]: m["doc"] for m in case["manifests"] if m["doc"]["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def env_refs(c: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in c.get("env", []) if "valueFrom" in e}


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_lints_strict_renders_and_validates(results: dict[str, Any], name: str) -> None:
    assert results["versions"][0] == "1.30.0" and results["versions"][1] != "1.30.0"   # and the newest it ships
    case = results["by_name"][name]
    for version, report in case["lint"].items():
        assert report["errors"] == [], (version, report)
        # --strict: warnings fail too; only INFO (severity 1, e.g. "icon is recommended") may remain
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], (version, report)
    assert "render_error" not in case, case.get("render_error")
    assert len(case["manifests"]) >= 8
    for m in case["manifests"]:
        for version, problem in m["invalid"].items():
            assert problem is None, (m["template"], m["doc"]["kind"], version, problem)
        assert m["duplicate_keys"] == [], (m["template"], m["doc"]["kind"], m["duplicate_keys"])


def test_defaults_install_the_api_scheduler_migration_and_guards(results: dict[str, Any]) -> None:
    case = results["by_name"]["required"]
    kinds = sorted((m["doc"]["kind"], m["doc"]["metadata"]["name"]) for m in case["manifests"])
    assert kinds == [("ConfigMap", "rel-mlgov"), ("Deployment", "rel-mlgov-api"), ("Deployment", "rel-mlgov-scheduler"),
                     ("Job", "rel-mlgov-migrate"), ("NetworkPolicy", "rel-mlgov-api"),
                     ("NetworkPolicy", "rel-mlgov-workers"), ("PodDisruptionBudget", "rel-mlgov-api"),
                     ("PodDisruptionBudget", "rel-mlgov-scheduler"), ("Secret", "rel-mlgov-migration"),
                     ("Secret", "rel-mlgov-secrets"), ("Service", "rel-mlgov"), ("ServiceAccount", "rel-mlgov")]
    deployments = docs(case, "Deployment")
    api, sched = deployments["rel-mlgov-api"], deployments["rel-mlgov-scheduler"]
    api_c, sched_c = container(api), container(sched)
    assert api_c["args"] == ["serve", "--host=0.0.0.0", "--port=8000", "--workers=2", "--no-scheduler"]
    assert sched_c["args"] == ["scheduler"] and sched["spec"]["replicas"] == 2
    # `mlgov scheduler` listens on nothing: no port, and no probe of one (its heartbeat is in the database)
    assert not {"ports", "livenessProbe", "readinessProbe", "startupProbe"} & set(sched_c)
    assert api_c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api_c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for d in (api, sched):
        pod = d["spec"]["template"]["spec"]
        c = container(d)
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert {v["mountPath"] for v in c["volumeMounts"]} == {"/tmp", "/var/lib/mlgov"}
        assert {v["name"]: "emptyDir" in v for v in pod["volumes"]} == {"tmp": True, "home": True}
        assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
        assert pod["automountServiceAccountToken"] is False
        assert c["envFrom"] == [{"configMapRef": {"name": "rel-mlgov"}}]
        assert env_refs(c) == {"MLGOV_DATABASE_URL": ("rel-mlgov-secrets", "database-url"),
                               "MLGOV_S3_ACCESS_KEY_ID": ("rel-mlgov-secrets", "s3-access-key-id"),
                               "MLGOV_S3_SECRET_ACCESS_KEY": ("rel-mlgov-secrets", "s3-secret-access-key"),
                               "MLGOV_SECRETS_KEY": ("rel-mlgov-secrets", "secrets-key"),
                               "MLGOV_AUDIT_KEY": ("rel-mlgov-secrets", "audit-key")}
    assert sched["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 600
    secret = docs(case, "Secret")["rel-mlgov-secrets"]["data"]
    assert {k: base64.b64decode(v).decode() for k, v in secret.items()} == {
        "database-url": REQUIRED["database"]["url"], "s3-access-key-id": "AKIDEXAMPLE",
        "s3-secret-access-key": "wJalrXUtnFEMI/K7MDENG", "secrets-key": REQUIRED["keys"]["secretsKey"],
        "audit-key": REQUIRED["keys"]["auditKey"]}
    config = docs(case, "ConfigMap")["rel-mlgov"]["data"]
    assert config["MLGOV_STORE_URL"] == "s3://mlgov-artifacts/prod"
    assert config["MLGOV_S3_ENDPOINT_URL"] == "https://s3.example:8333" and config["MLGOV_COMPUTE"] == "local"
    assert not any("KEY" in k or "DATABASE" in k for k in config)   # no secret in the ConfigMap (all cases: below)
    assert config["MLGOV_BOOTSTRAP_ADMIN"] == "false"   # MLGOV_HOME is scratch: the first admin key is made by hand
    job = docs(case, "Job")["rel-mlgov-migrate"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    job_c = job["spec"]["template"]["spec"]["containers"][0]
    assert job_c["args"] == ["db", "upgrade"] and job_c["securityContext"]["readOnlyRootFilesystem"] is True
    assert env_refs(job_c) == {"MLGOV_DATABASE_URL": ("rel-mlgov-migration", "database-url")}
    hook_secret = docs(case, "Secret")["rel-mlgov-migration"]
    # the hook Secret exists before the Job (a first install has no release Secret yet)
    assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"])
    workers_policy = docs(case, "NetworkPolicy")["rel-mlgov-workers"]
    assert workers_policy["spec"]["ingress"] == [] and workers_policy["spec"]["policyTypes"] == ["Ingress"]


def test_ingress_hpa_and_dask(results: dict[str, Any]) -> None:
    case = results["by_name"]["full"]
    ingress = docs(case, "Ingress")["rel-mlgov"]
    assert ingress["spec"]["rules"][0]["host"] == "mlgov.example.com"
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "rel-mlgov"
    hpa = docs(case, "HorizontalPodAutoscaler")["rel-mlgov-api"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 8)
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu", "memory"]
    deployments = docs(case, "Deployment")
    assert "replicas" not in deployments["rel-mlgov-api"]["spec"]   # the HPA owns it
    assert docs(case, "ConfigMap")["rel-mlgov"]["data"]["MLGOV_COMPUTE"] == "dask://rel-mlgov-dask-scheduler:8786"
    assert docs(case, "ConfigMap")["rel-mlgov"]["data"]["MLGOV_COMPUTE_MIN_ROWS"] == "1000000"
    assert docs(case, "Service")["rel-mlgov-dask-scheduler"]["spec"]["ports"][0]["port"] == 8786
    worker = deployments["rel-mlgov-dask-worker"]
    assert worker["spec"]["replicas"] == 4
    wc = container(worker)
    assert wc["command"] == ["dask", "worker"] and wc["args"][0] == "tcp://rel-mlgov-dask-scheduler:8786"
    assert "--nthreads=2" in wc["args"]
    assert set(env_refs(wc)) == {"MLGOV_S3_ACCESS_KEY_ID", "MLGOV_S3_SECRET_ACCESS_KEY"}   # no database, no keys
    assert container(deployments["rel-mlgov-dask-scheduler"])["command"] == ["dask", "scheduler"]
    policies = docs(case, "NetworkPolicy")
    assert policies["rel-mlgov-api"]["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policies["rel-mlgov-api"]["spec"]["ingress"][0]["from"] == FULL["networkPolicy"]["apiIngressFrom"]
    assert {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]} in \
        policies["rel-mlgov-api"]["spec"]["egress"]
    assert "rel-mlgov-dask" in policies
    assert "dask://rel-mlgov-dask-scheduler:8786" in case["notes"]


def test_existing_secrets_are_referenced_and_not_copied(results: dict[str, Any]) -> None:
    case = results["by_name"]["existing"]
    assert docs(case, "Secret") == {}   # every secret comes from the operator's Secrets
    api = docs(case, "Deployment")["rel-mlgov-api"]
    assert "rel-mlgov-scheduler" not in docs(case, "Deployment")
    assert container(api)["args"][-1] == "--scheduler"   # no scheduler Deployment: the API runs schedules
    assert env_refs(container(api)) == {"MLGOV_DATABASE_URL": ("prod-db", "url"),
                                        "MLGOV_S3_ACCESS_KEY_ID": ("prod-s3", "access-key-id"),
                                        "MLGOV_S3_SECRET_ACCESS_KEY": ("prod-s3", "secret-access-key"),
                                        "MLGOV_SECRETS_KEY": ("prod-keys", "secrets-key"),
                                        "MLGOV_AUDIT_KEY": ("prod-keys", "audit-key")}
    job_c = docs(case, "Job")["rel-mlgov-migrate"]["spec"]["template"]["spec"]["containers"][0]
    assert env_refs(job_c) == {"MLGOV_DATABASE_URL": ("prod-db", "url")}


def test_workload_identity_drops_static_s3_keys(results: dict[str, Any]) -> None:
    case = results["by_name"]["irsa"]
    api = container(docs(case, "Deployment")["rel-mlgov-api"])
    assert "MLGOV_S3_ACCESS_KEY_ID" not in env_refs(api)
    assert set(docs(case, "Secret")["rel-mlgov-secrets"]["data"]) == {"database-url", "secrets-key", "audit-key"}
    sa = docs(case, "ServiceAccount")["rel-mlgov"]
    assert sa["metadata"]["annotations"] == IRSA["serviceAccount"]["annotations"]


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_schema_rejects(results: dict[str, Any], name: str) -> None:
    case = results["by_name"][name]
    assert "render_error" in case and "HelmValuesError" in case["render_error"], case.get("render_error")
    assert "values don't meet the specifications of the schema" in case["render_error"]
    for report in case["lint"].values():
        assert any(m["severity"] == 3 and m["path"] == "values.yaml" for m in report["messages"]), report


def test_the_schema_names_what_is_missing(results: dict[str, Any]) -> None:
    errors = {n: results["by_name"][n]["render_error"] for n in ("no database", "no s3", "no keys",
                                                                 "replicas as a string")}
    assert "/database" in errors["no database"] and "/s3" not in errors["no database"]
    assert "/s3" in errors["no s3"] and "/keys" in errors["no keys"]
    assert "/api/replicas" in errors["replicas as a string"]


def test_the_chart_as_shipped_refuses_to_install(results: dict[str, Any]) -> None:
    """helm-sdkpy's lint (the chart's own values.yaml, no overrides) finds the values invalid: without a database,
    an object store and keys the chart does not install."""
    report = results["helm_sdkpy_lint"]
    assert any(m["Severity"] == 3 and m["Path"] == "values.yaml" for m in report["Messages"]), report


def pod_specs(case: dict[str, Any]) -> list[dict[str, Any]]:
    return [m["doc"]["spec"]["template"]["spec"] for m in case["manifests"]
            if m["doc"]["kind"] in ("Deployment", "Job")]


def secret_env_names(case: dict[str, Any]) -> set[str]:
    """The variables every workload of a rendered case reads from a Secret."""
    pods = pod_specs(case)
    return {name for pod in pods for c in pod["containers"] for name in env_refs(c)}


def chart_env_names(case: dict[str, Any], extra: dict[str, str]) -> set[str]:
    """The MLGOV_* variables a rendered case sets itself: ConfigMap keys (but the case's own extraEnv) and container
    env, plus MLGOV_SCHEDULER, which `mlgov serve --scheduler/--no-scheduler` sets from scheduler.enabled."""
    (config,) = docs(case, "ConfigMap").values()
    pods = pod_specs(case)
    env = {e["name"] for pod in pods for c in pod["containers"] for e in c.get("env", [])}
    names = (set(config["data"]) - set(extra)) | {n for n in env if n.startswith("MLGOV_")}
    api = container(docs(case, "Deployment")["rel-mlgov-api"])
    if {"--scheduler", "--no-scheduler"} & set(api["args"]):
        names.add("MLGOV_SCHEDULER")
    return names


def refused_extra_env() -> set[str]:
    schema = json.loads((CHART / "values.schema.json").read_text())
    props = schema["properties"]["config"]["properties"]["extraEnv"]["properties"]
    return {name for name, sub in props.items() if sub is False}


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_no_secret_reaches_the_configmap(results: dict[str, Any], name: str) -> None:
    """Not by name (a variable read from a Secret is not also in the ConfigMap) and not by value (no inline secret
    of the case is in the ConfigMap's data), extraEnv included."""
    case, values = results["by_name"][name], RENDERED[name]
    (config,) = docs(case, "ConfigMap").values()
    data = config["data"]
    assert set(values.get("config", {}).get("extraEnv", {})) <= set(data)   # extraEnv is rendered there
    assert not set(data) & secret_env_names(case)
    assert not set(data) & {"MLGOV_DATABASE_URL", "MLGOV_S3_ACCESS_KEY_ID", "MLGOV_S3_SECRET_ACCESS_KEY",
                            "MLGOV_SECRETS_KEY", "MLGOV_AUDIT_KEY"}
    inline = [values.get("database", {}).get("url"), values.get("s3", {}).get("accessKeyId"),
              values.get("s3", {}).get("secretAccessKey"), values.get("keys", {}).get("secretsKey"),
              values.get("keys", {}).get("auditKey")]
    for secret in filter(None, inline):
        assert not any(secret in v for v in data.values()), secret


def test_extra_env_refuses_every_name_the_chart_sets(results: dict[str, Any]) -> None:
    """The schema's refused extraEnv names are exactly the MLGOV_* names the templates write (read from their
    source, and from every rendered case), so a setting the chart starts to manage is refused in extraEnv too."""
    source = "".join(p.read_text() for p in sorted((CHART / "templates").iterdir()) if p.name != "NOTES.txt")
    written = set(re.findall(r"\bMLGOV_[A-Z0-9_]+\b", source)) | {"MLGOV_SCHEDULER"}   # --[no-]scheduler
    rendered: set[str] = set()
    for name, values in RENDERED.items():
        rendered |= chart_env_names(results["by_name"][name], values.get("config", {}).get("extraEnv", {}))
    assert rendered <= written
    assert refused_extra_env() == written
    assert secret_env_names(results["by_name"]["required"]) <= refused_extra_env()


def test_extra_env_refusal_names_the_key_and_hides_the_value(results: dict[str, Any]) -> None:
    error = results["by_name"]["chart secrets and settings in extraEnv"]["render_error"]
    for key, value in LEAKED_ENV.items():
        assert f"/config/extraEnv/{key}" in error, error
        assert value not in error   # a schema error must not print the secret it refuses
    assert "/config/extraEnv/MLGOV_DATABASE_URL" in results["by_name"]["the database URL in extraEnv"]["render_error"]


def external_scheduler_pattern() -> str:
    schema = json.loads((CHART / "values.schema.json").read_text())
    pattern: str = schema["properties"]["dask"]["properties"]["externalScheduler"]["pattern"]
    return pattern


@pytest.mark.parametrize("address", ["dask://dask-scheduler:8786", "tcp://dask-scheduler.analytics.svc:8786",
                                     "tls://dask-scheduler.analytics:8786", "tls://10.0.0.7:8786",
                                     "tcp://[fd00::7]:8786", ""])
def test_the_schema_takes_every_scheduler_address_the_server_takes(address: str) -> None:
    """dask:// (plain TCP, the README's form), tcp:// and tls:// with a host and port: what MLGOV_COMPUTE accepts
    (mlgov.settings) and monitor.compute turns into a Dask address with the same transport."""
    from mlgov.settings import Settings
    from monitor import compute

    assert re.fullmatch(external_scheduler_pattern(), address)
    if address:
        cluster = compute.configure(Settings(compute=address))
        assert cluster is not None
        assert cluster.address == address.replace("dask://", "tcp://")
        compute.configure(Settings())


@pytest.mark.parametrize("address", ["local", "http://dask-scheduler:8786", "tls://dask-scheduler",
                                     "tcp://dask-scheduler:8786/x", "tls://:8786", "dask-scheduler:8786"])
def test_the_schema_refuses_scheduler_addresses_dask_cannot_dial(address: str) -> None:
    assert not re.fullmatch(external_scheduler_pattern(), address)


def test_tls_scheduler_gets_the_client_certificate(results: dict[str, Any]) -> None:
    case = results["by_name"]["dask tls"]
    assert docs(case, "ConfigMap")["rel-mlgov"]["data"]["MLGOV_COMPUTE"] == "tls://dask-scheduler.analytics:8786"
    deployments = docs(case, "Deployment")
    for name in ("rel-mlgov-api", "rel-mlgov-scheduler"):   # the processes that run a Dask Client
        pod = deployments[name]["spec"]["template"]["spec"]
        c = container(deployments[name])
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert {k: v for k, v in env.items() if k.startswith("DASK_")} == {
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": "/etc/mlgov/dask-tls/ca.crt",
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": "/etc/mlgov/dask-tls/tls.crt",
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": "/etc/mlgov/dask-tls/tls.key"}
        assert {"name": "dask-tls", "mountPath": "/etc/mlgov/dask-tls", "readOnly": True} in c["volumeMounts"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == "dask-tls"]
        assert volume["secret"]["secretName"] == "dask-client"
    job_c = docs(case, "Job")["rel-mlgov-migrate"]["spec"]["template"]["spec"]["containers"][0]
    assert not any(e["name"].startswith("DASK_") for e in job_c["env"])   # the migration runs no analysis
    for name in ("required", "full"):   # plain TCP (and the chart's own cluster): no certificate
        for d in docs(results["by_name"][name], "Deployment").values():
            assert not any(e["name"].startswith("DASK_") for e in container(d).get("env", []))
            assert "dask-tls" not in {v["name"] for v in d["spec"]["template"]["spec"]["volumes"]}


def _certificates(directory: Path) -> None:
    """A CA and one certificate it signed (Dask's TLS is mutual; scheduler, worker and client may share it)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlgov test Dask CA")])

    def cert(subject: x509.Name, public: Any, ca: bool) -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(public)
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(hours=1))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(ca_key, hashes.SHA256()))

    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(cert(ca_name, ca_key.public_key(), True).public_bytes(pem))
    leaf = cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dask")]), key.public_key(), False)
    (directory / "tls.crt").write_bytes(leaf.public_bytes(pem))
    (directory / "tls.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))


CLIENT = """
import sys
from mlgov.settings import Settings
from monitor import compute
cluster = compute.configure(Settings(compute=sys.argv[1]))
print(cluster.client().submit(sum, [1, 2], pure=False).result(timeout=60))
cluster.close()
"""


def test_tls_scheduler_answers_a_client_set_up_as_the_chart_sets_it(results: dict[str, Any], tmp_path: Path) -> None:
    """A real Dask cluster speaking only TLS; mlgov's compute client in a process of its own, with nothing but the
    environment the chart gives the API pod (its DASK_* variables, the Secret's files where it mounts them)."""
    pytest.importorskip("distributed")
    from distributed import LocalCluster, Security

    _certificates(tmp_path)
    api = container(docs(results["by_name"]["dask tls"], "Deployment")["rel-mlgov-api"])
    (mount,) = [m["mountPath"] for m in api["volumeMounts"] if m["name"] == "dask-tls"]
    env = {e["name"]: e["value"].replace(mount, str(tmp_path)) for e in api["env"] if e["name"].startswith("DASK_")}
    files = {f"tls_{role}_{part}": str(tmp_path / f"tls.{ext}") for role in ("scheduler", "worker", "client")
             for part, ext in (("cert", "crt"), ("key", "key"))}
    security = Security(tls_ca_file=str(tmp_path / "ca.crt"), require_encryption=True, **files)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tls", security=security,
                      host="127.0.0.1", dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        base = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
        ran = subprocess.run([sys.executable, "-c", CLIENT, address], env={**base, **env, "PYTHONPATH": str(ROOT)},
                             capture_output=True, text=True, timeout=120, check=False)
        assert ran.returncode == 0 and ran.stdout.split()[-1] == "3", ran.stderr[-3000:]
        quick = {"PYTHONPATH": str(ROOT), "MLGOV_COMPUTE_CONNECT_TIMEOUT_S": "2"}
        bare = subprocess.run([sys.executable, "-c", CLIENT, address], capture_output=True, text=True, timeout=120,
                              check=False, env={**base, **quick})
        assert bare.returncode != 0 and "TLS configuration" in bare.stderr   # no certificate: no connection
        # and mlgov says so as its own error naming the settings (was distributed's raw TypeError)
        assert "ComputeFailed" in bare.stderr and "has no Dask TLS configuration" in bare.stderr, bare.stderr
