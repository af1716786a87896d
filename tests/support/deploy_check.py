#!/usr/bin/python3
"""deploy_check.py - checks deploy/kubernetes/ and deploy/compose.yaml
against the mailpool binary (used by tests/integration/test_deploy.sh).

  - every MAILPOOL_* variable the manifests set is a key that
    `mailpool serve --print-config` knows (or MAILPOOL_CONFIG);
  - the values load: `mailpool serve --print-config` exits 0 with the
    ConfigMap's environment, and with the compose file's;
  - the Deployment runs non-root with a read-only root file system, no
    capability, probes on /healthz and /readyz, resources, service links
    off, and a grace period covering shutdown_delay + drain_timeout;
  - the scale-out files (deploy/compose-postgres.yaml's mailpool service,
    deploy/kubernetes-postgres/queue.yaml's ConfigMap over the base one):
    their MAILPOOL_* variables are keys, their values load with the queue
    on PostgreSQL, and the Deployment patch mounts both passwords;
  - smoke: `mailpool serve` with the ConfigMap's environment plus the
    service-link variables Kubernetes would inject for the Services of
    service.yaml (and for one named mailpool-relay) starts, logs one
    warning naming them, is ready, and on SIGTERM says "stopping" and
    exits 0.
Prints "ok: ..." / "FAIL: ..." lines and "test_deploy: N passed, M failed".
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAILPOOL = os.environ.get("MAILPOOL_BIN", os.path.join(ROOT, "build", "mailpool"))
K8S = os.path.join(ROOT, "deploy", "kubernetes")
COMPOSE = os.path.join(ROOT, "deploy", "compose.yaml")
results = {"pass": 0, "fail": 0}


def check(ok, what):
    results["pass" if ok else "fail"] += 1
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
    return ok


def clean_env():
    """The process environment without any MAILPOOL_* variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MAILPOOL_")}


def real_keys():
    """MAILPOOL_<SECTION>_<KEY> of every key --print-config shows."""
    out = subprocess.run([MAILPOOL, "serve", "--print-config"], env=clean_env(),
                         capture_output=True, text=True, check=True).stdout
    keys, section = {"MAILPOOL_CONFIG"}, None
    for line in out.splitlines():
        m = re.match(r"^\[(\w+)\]$", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^(\w+) =", line)
        if m and section:
            keys.add(("MAILPOOL_%s_%s" % (section, m.group(1))).upper())
    return keys


def load_docs():
    docs = []
    for name in sorted(os.listdir(K8S)):
        if name.endswith(".yaml"):
            with open(os.path.join(K8S, name)) as f:
                docs += [(name, d) for d in yaml.safe_load_all(f) if d]
    return docs


def of_kind(docs, kind):
    return [d for _, d in docs if d.get("kind") == kind]


def manifest_env_names(docs):
    """(where, name) of every MAILPOOL_* variable the manifests set."""
    names = []
    for name, d in docs:
        if d.get("kind") == "ConfigMap":
            names += [(name, k) for k in d.get("data", {})]
        if d.get("kind") == "Deployment":
            for c in d["spec"]["template"]["spec"]["containers"]:
                names += [(name, e["name"]) for e in c.get("env", [])]
    with open(COMPOSE) as f:
        comp = yaml.safe_load(f)
    for svc, s in comp["services"].items():
        env = s.get("environment", {})
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        names += [("compose.yaml:" + svc, k) for k in env]
    return [(w, n) for w, n in names if n.startswith("MAILPOOL_")]


def check_names(docs):
    keys = real_keys()
    names = manifest_env_names(docs)
    check(len(names) >= 10, "the manifests set %d MAILPOOL_* variables" % len(names))
    for where, n in names:
        check(n in keys, "%s sets %s, a configuration key" % (where, n))


def configmap_env(docs, passfile, listen):
    """The ConfigMap's data as an environment runnable here."""
    env = dict(of_kind(docs, "ConfigMap")[0]["data"])
    if "MAILPOOL_RELAY_AUTH_PASS_FILE" in env:
        env["MAILPOOL_RELAY_AUTH_PASS_FILE"] = passfile
    env["MAILPOOL_HTTP_LISTEN"] = listen
    env["MAILPOOL_HTTP_API_KEYS"] = "a-test-key-of-some-length"
    return env


def check_values_load(docs, passfile):
    for what, env in (("the ConfigMap", configmap_env(docs, passfile, "127.0.0.1:0")),
                      ("compose.yaml's mailpool", compose_env())):
        p = subprocess.run([MAILPOOL, "serve", "--print-config"],
                           env={**clean_env(), **env}, capture_output=True, text=True)
        check(p.returncode == 0,
              "%s's values load (--print-config exit %d %s)"
              % (what, p.returncode, p.stderr.strip()))


def compose_env():
    with open(COMPOSE) as f:
        comp = yaml.safe_load(f)
    return {k: str(v) for k, v in comp["services"]["mailpool"]["environment"].items()}


def check_deployment(docs):
    dep = of_kind(docs, "Deployment")[0]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    sc = c.get("securityContext", {})
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True or sc.get("runAsNonRoot") is True,
          "Deployment: runAsNonRoot")
    check(psc.get("runAsUser") == 10001, "Deployment: runAsUser 10001 (the image's USER)")
    check(sc.get("readOnlyRootFilesystem") is True, "Deployment: readOnlyRootFilesystem")
    check(sc.get("allowPrivilegeEscalation") is False, "Deployment: no privilege escalation")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "Deployment: capabilities drop ALL")
    check(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz",
          "Deployment: readinessProbe on /readyz")
    check(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz",
          "Deployment: livenessProbe on /healthz")
    res = c.get("resources", {})
    check("requests" in res and "memory" in res.get("limits", {}),
          "Deployment: resources (requests, memory limit)")
    check(pod.get("enableServiceLinks") is False, "Deployment: enableServiceLinks false")
    data = of_kind(docs, "ConfigMap")[0]["data"]
    need = int(data.get("MAILPOOL_HTTP_SHUTDOWN_DELAY", 0)) + \
        int(data.get("MAILPOOL_POOL_DRAIN_TIMEOUT", 30))
    check(pod.get("terminationGracePeriodSeconds", 30) > need,
          "Deployment: terminationGracePeriodSeconds %s > shutdown_delay + drain_timeout (%d)"
          % (pod.get("terminationGracePeriodSeconds"), need))
    refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
            if "valueFrom" in e] + \
        [v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v]
    secrets = {s["metadata"]["name"] for s in of_kind(docs, "Secret")}
    check(refs and all(r in secrets for r in refs),
          "Deployment: every Secret it uses is in secret.yaml")


def link_env(name, ip, ports):
    """The variables Kubernetes injects for Service name (docker links)."""
    svc = name.upper().replace("-", "_")
    first = ports[0]
    env = {svc + "_SERVICE_HOST": ip, svc + "_SERVICE_PORT": str(first["port"]),
           svc + "_PORT": "tcp://%s:%d" % (ip, first["port"])}
    for p in ports:
        proto = p.get("protocol", "TCP")
        if p.get("name"):
            env["%s_SERVICE_PORT_%s" % (svc, p["name"].upper().replace("-", "_"))] = \
                str(p["port"])
        base = "%s_PORT_%d_%s" % (svc, p["port"], proto)
        env[base] = "%s://%s:%d" % (proto.lower(), ip, p["port"])
        env[base + "_PROTO"] = proto.lower()
        env[base + "_PORT"] = str(p["port"])
        env[base + "_ADDR"] = ip
    return env


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except (OSError, ValueError):
        return None, None


def smoke(docs, passfile, tmp):
    links = {}
    for svc in of_kind(docs, "Service"):
        links.update(link_env(svc["metadata"]["name"], "10.96.0.11", svc["spec"]["ports"]))
    links.update(link_env("mailpool-relay", "10.96.0.10",
                          [{"name": "smtp", "port": 587, "protocol": "TCP"}]))
    port = free_port()
    env = configmap_env(docs, passfile, "127.0.0.1:%d" % port)
    # As Kubernetes does: the container's own variables win over links.
    env = {**clean_env(), **{k: v for k, v in links.items() if k not in env}, **env}
    ignored = [k for k in links if k not in configmap_env(docs, passfile, "")]
    log = open(os.path.join(tmp, "serve.log"), "w+")
    proc = subprocess.Popen([MAILPOOL, "serve"], env=env, stdout=log, stderr=log)
    try:
        url = "http://127.0.0.1:%d" % port
        deadline = time.time() + 10
        status = None
        while time.time() < deadline and proc.poll() is None:
            status, _ = http_get(url + "/healthz")
            if status == 200:
                break
            time.sleep(0.1)
        if not check(status == 200, "smoke: serve with the ConfigMap and %d service-link "
                     "variables answers /healthz (exit %s)" % (len(links), proc.poll())):
            log.seek(0)
            print(log.read()[-2000:])
            return
        status, body = http_get(url + "/readyz")
        check(status == 200, "smoke: /readyz 200 without a relay "
              "(ready_requires_relay false) (got %s %s)" % (status, body))
        log.seek(0)
        lines = [json.loads(l) for l in log.read().splitlines() if l.startswith("{")]
        warns = [l for l in lines if l.get("event") == "config"]
        check(len(warns) == 1 and warns[0].get("level") == "warn"
              and warns[0].get("count") == len(ignored),
              "smoke: one warning for the %d ignored links (got %s)" % (len(ignored), warns))
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        status, body = http_get(url + "/readyz")
        check(status == 503 and body == {"status": "stopping"},
              "smoke: after SIGTERM /readyz is 503 stopping (got %s %s)" % (status, body))
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc == 0, "smoke: serve exits 0 after the shutdown delay (got %s)" % rc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def check_postgres_files(docs, passfile):
    """The scale-out compose file and kustomize overlay (docs/SCALING.md)."""
    keys = real_keys()
    with open(os.path.join(ROOT, "deploy", "compose-postgres.yaml")) as f:
        comp = yaml.safe_load(f)["services"]["mailpool"]["environment"]
    with open(os.path.join(ROOT, "deploy", "kubernetes-postgres", "queue.yaml")) as f:
        over = [("queue.yaml", d) for d in yaml.safe_load_all(f) if d]
    cm = dict(of_kind(docs, "ConfigMap")[0]["data"])
    cm.update(of_kind(over, "ConfigMap")[0]["data"])
    for what, env in (("compose-postgres.yaml", {k: str(v) for k, v in comp.items()}),
                      ("kubernetes-postgres", cm)):
        for n in env:
            check(n in keys, "%s sets %s, a configuration key" % (what, n))
        check(env.get("MAILPOOL_QUEUE_BACKEND") == "postgres",
              "%s puts the queue on PostgreSQL" % what)
        run = {k: (passfile if k.endswith("_FILE") else v) for k, v in env.items()}
        run.update(MAILPOOL_HTTP_API_KEYS="a-test-key-of-some-length")
        p = subprocess.run([MAILPOOL, "serve", "--print-config"],
                           env={**clean_env(), **run}, capture_output=True, text=True)
        check(p.returncode == 0, "%s's values load (--print-config exit %d %s)"
              % (what, p.returncode, p.stderr.strip()))
    vols = of_kind(over, "Deployment")[0]["spec"]["template"]["spec"]["volumes"]
    items = {i["key"] for v in vols for i in v["secret"]["items"]}
    check(items == {"relay-pass", "queue-pass"},
          "kubernetes-postgres mounts relay-pass and queue-pass (%s)" % sorted(items))


def main():
    docs = load_docs()
    kinds = {d.get("kind") for _, d in docs}
    check({"Deployment", "Service", "ConfigMap", "Secret"} <= kinds,
          "deploy/kubernetes has a Deployment, Service, ConfigMap and Secret (%s)"
          % sorted(kinds))
    with tempfile.TemporaryDirectory(prefix="mailpool-deploy-") as tmp:
        passfile = os.path.join(tmp, "relay-pass")
        with open(passfile, "w") as f:
            f.write("not-a-real-password\n")
        # As the Deployment mounts it (defaultMode 0440, owned by root):
        # mailpool refuses a secret file others can read.
        os.chmod(passfile, 0o440 if os.geteuid() == 0 else 0o600)
        check_names(docs)
        check_values_load(docs, passfile)
        check_deployment(docs)
        check_postgres_files(docs, passfile)
        smoke(docs, passfile, tmp)
    print("test_deploy: %d passed, %d failed" % (results["pass"], results["fail"]))
    return 1 if results["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
