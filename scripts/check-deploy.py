#!/usr/bin/env python3
"""Checks Karst's deployment files, which this machine cannot run (no registry for
the Prometheus/Grafana images, no Kubernetes): they parse, and they agree with Karst
and with each other.

- every file under docker/ and deploy/k8s/ that is YAML or JSON parses;
- every KARST_* variable in the compose files and the StatefulSet names a key that
  broker/src/config.rs knows (an unknown key stops the broker at start-up);
- listeners: each named listener has a protocol mapping, each advertised name is a
  listener, the inter-broker listener exists; published/container ports match the
  listeners; a compose CLIENT listener is advertised as localhost:<published port>
  and an INTERNAL one by its service name; the controller voters are the services
  (compose) or the StatefulSet's pods under its headless service (Kubernetes);
- Kubernetes: the probes and Prometheus use the admin port, the Services and the
  PodDisruptionBudget select the StatefulSet's pods, the kustomization lists files
  that exist;
- Prometheus scrapes the brokers' admin port 9644, and the Grafana dashboard queries
  only the agreed metric names (README, "Metrics").

Usage: scripts/check-deploy.py [REPO_ROOT]   (exit 1 and a list of problems if any)
"""

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
ADMIN_PORT = 9644
# Keys a deployment file may set before the broker knows them, and where (none now).
PENDING_KEYS = {}
# The metric names agreed with the metrics exporter.
COUNTERS = {
    "karst_topic_messages_in_total", "karst_topic_bytes_in_total", "karst_topic_messages_out_total",
    "karst_topic_bytes_out_total", "karst_requests_total", "karst_request_errors_total",
    "karst_isr_shrinks_total", "karst_isr_expands_total",
}
HISTOGRAMS = {"karst_request_latency_seconds", "karst_log_flush_latency_seconds"}
GAUGES = {
    "karst_produce_purgatory_size", "karst_fetch_purgatory_size", "karst_partitions_led",
    "karst_under_replicated_partitions", "karst_offline_partitions", "karst_controller_is_leader",
    "karst_controller_active_brokers", "karst_consumer_group_lag", "karst_log_size_bytes", "karst_connections",
}
METRICS = COUNTERS | GAUGES | {h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}

problems = []


def problem(where, text):
    problems.append(f"{where}: {text}")


def rel(path):
    return str(Path(path).relative_to(ROOT))


def config_keys():
    """The keys `BrokerConfig::set` accepts, from its KEYS list."""
    text = (ROOT / "broker/src/config.rs").read_text()
    m = re.search(r"pub const KEYS: &'static \[&'static str\] = &\[(.*?)\];", text, re.S)
    if not m:
        sys.exit("check-deploy: cannot find BrokerConfig::KEYS in broker/src/config.rs")
    return set(re.findall(r'"([a-z0-9.]+)"', m.group(1)))


KEYS = config_keys()


def env_key(name):
    """KARST_LOG_SEGMENT_BYTES -> log.segment.bytes (None for tooling variables)."""
    rest = name[len("KARST_"):]
    if rest in ("BIN", "LOG"):
        return None
    return rest.lower().replace("_", ".")


def check_env(where, env, kind):
    for name in env:
        if not name.startswith("KARST_"):
            continue
        key = env_key(name)
        if key is None or key in KEYS:
            continue
        if PENDING_KEYS.get(key) == kind:
            continue
        problem(where, f"{name}: `{key}` is not a Karst config key")


def load_yaml_docs(path):
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        problem(rel(path), f"does not parse: {e}")
        return []


HOST_PORT_RE = re.compile(r"^(.*):(\$\{[^}]*\}|\d+)$")


def host_port(addr):
    """host:port, where the port may be a compose `${VAR:-default}`."""
    m = HOST_PORT_RE.match(addr)
    return (m.group(1), m.group(2)) if m else (addr, "")


def parse_named(text):
    """NAME://host:port,... -> {NAME: (host, port)} (a bare host:port is PLAINTEXT)."""
    out = {}
    for entry in (e.strip() for e in text.split(",")):
        name, _, addr = entry.rpartition("://")
        out[(name or "PLAINTEXT").upper()] = host_port(addr)
    return out


def check_listeners(where, env):
    """Named-listener consistency; returns ({name: (host, port)} bound, advertised)."""
    bound = parse_named(env.get("KARST_LISTENERS", "0.0.0.0:9092"))
    advertised = parse_named(env["KARST_ADVERTISED_LISTENERS"]) if "KARST_ADVERTISED_LISTENERS" in env else {}
    protocols = {}
    if "KARST_LISTENER_SECURITY_PROTOCOL_MAP" in env:
        for entry in env["KARST_LISTENER_SECURITY_PROTOCOL_MAP"].split(","):
            name, _, proto = entry.strip().partition(":")
            protocols[name.upper()] = proto.upper()
    for name in bound:
        proto = protocols.get(name, name if not protocols else None)
        if proto != "PLAINTEXT":
            problem(where, f"listener {name}: security protocol {proto} (only PLAINTEXT)")
    for name in advertised:
        if name not in bound:
            problem(where, f"advertised listener {name} is not one of the listeners {sorted(bound)}")
    ibl = env.get("KARST_INTER_BROKER_LISTENER_NAME")
    if ibl and ibl.upper() not in bound:
        problem(where, f"inter.broker.listener.name {ibl} is not a listener")
    return bound, advertised


def voters(env):
    text = env.get("KARST_CONTROLLER_QUORUM_VOTERS", "")
    out = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        node, _, addr = entry.partition("@")
        out[int(node)] = host_port(addr)
    return out


DEFAULT_RE = re.compile(r"^\$\{(\w+):-(\d+)\}$")


def check_compose(path):
    docs = load_yaml_docs(path)
    if not docs:
        return
    where = rel(path)
    services = docs[0].get("services", {})
    karst = {n: s for n, s in services.items() if "KARST_IMAGE" in str(s.get("image", ""))}
    if not karst:
        problem(where, "no Karst service")
    for name, svc in karst.items():
        w = f"{where} {name}"
        env = svc.get("environment", {})
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        env = {k: str(v) for k, v in env.items()}
        check_env(w, env, "compose")
        bound, advertised = check_listeners(w, env)
        published = {}
        for p in svc.get("ports", []):
            parts = str(p).rsplit(":", 1)
            host_part = parts[0].split(":", 1)[-1] if ":" in parts[0] else parts[0]
            published[parts[1].split("/")[0]] = host_part
        for lname, (host, port) in bound.items():
            adv = advertised.get(lname)
            if lname == "CLIENT":
                if port not in published:
                    problem(w, f"CLIENT listener port {port} is not published ({svc.get('ports')})")
                elif adv and (adv[0] != "localhost" or adv[1] != published[port]):
                    problem(w, f"CLIENT advertised as {adv[0]}:{adv[1]}, published as localhost:{published[port]}")
                if not DEFAULT_RE.match(published.get(port, "")):
                    problem(w, f"published port {published.get(port)} has no ${{VAR:-default}} override")
            if lname == "INTERNAL" and adv and (adv[0] not in (name, svc.get("hostname")) or adv[1] != port):
                problem(w, f"INTERNAL advertised as {adv[0]}:{adv[1]}, not {name}:{port}")
        for node, (host, port) in voters(env).items():
            if host not in services:
                problem(w, f"controller voter {node}@{host}:{port} is not a service")
            elif str(node) != re.sub(r"^\D*", "", host) and env.get("KARST_NODE_ID_FROM_HOSTNAME") == "true":
                problem(w, f"voter {node}@{host}: the node id is not its host name's number")
        if env.get("KARST_NODE_ID_FROM_HOSTNAME") == "true":
            host = svc.get("hostname", "")
            if not re.search(r"\d+$", host):
                problem(w, f"node.id.from.hostname needs a numbered hostname, got {host!r}")
    if "prometheus" in services:
        for svc in ("prometheus", "grafana"):
            if "monitoring" not in services.get(svc, {}).get("profiles", []):
                problem(where, f"{svc} must be in the (optional) monitoring profile")
        mounts = " ".join(services["prometheus"].get("volumes", []))
        if "prometheus.yml" not in mounts:
            problem(where, "prometheus does not mount docker/prometheus.yml")
        check_prometheus(ROOT / "docker/prometheus.yml", set(karst))


def check_prometheus(path, brokers):
    docs = load_yaml_docs(path)
    if not docs:
        return
    targets = set()
    for job in docs[0].get("scrape_configs", []):
        for sc in job.get("static_configs", []):
            targets.update(sc.get("targets", []))
    want = {f"{b}:{ADMIN_PORT}" for b in brokers}
    if targets != want:
        problem(rel(path), f"targets {sorted(targets)}, want every broker's admin port {sorted(want)}")


def check_dashboard(path):
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        problem(rel(path), f"does not parse: {e}")
        return
    exprs = []

    def walk(panels):
        for p in panels:
            exprs.extend(t.get("expr", "") for t in p.get("targets", []))
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    if not exprs:
        problem(rel(path), "no queries")
    for e in exprs:
        for name in re.findall(r"\bkarst_[a-z_]+", e):
            if name not in METRICS:
                problem(rel(path), f"query uses `{name}`, not an agreed metric name: {e}")


def check_k8s(dirpath):
    kust = load_yaml_docs(dirpath / "kustomization.yaml")
    if not kust:
        problem(rel(dirpath), "no kustomization.yaml")
        return
    objects = []
    for f in kust[0].get("resources", []):
        p = dirpath / f
        if not p.is_file():
            problem(rel(dirpath / "kustomization.yaml"), f"resource {f} does not exist")
            continue
        objects.extend((rel(p), d) for d in load_yaml_docs(p))
    by_kind = {}
    for where, o in objects:
        by_kind.setdefault(o.get("kind"), []).append((where, o))
    sts_list = by_kind.get("StatefulSet", [])
    if len(sts_list) != 1:
        problem(rel(dirpath), f"want one StatefulSet, got {len(sts_list)}")
        return
    where, sts = sts_list[0]
    name = sts["metadata"]["name"]
    spec = sts["spec"]
    pod = spec["template"]
    labels = pod["metadata"]["labels"]
    if spec["selector"]["matchLabels"].items() - labels.items():
        problem(where, "selector does not match the pod labels")
    container = pod["spec"]["containers"][0]
    env = {e["name"]: str(e.get("value", "")) for e in container.get("env", [])}
    check_env(where, env, "k8s")
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    bound, advertised = check_listeners(where, env)
    for lname, (_, port) in bound.items():
        if int(port) not in ports.values():
            problem(where, f"listener {lname} port {port} is not a container port")
    admin = env.get("KARST_ADMIN_LISTENER", "")
    if not admin.endswith(f":{ADMIN_PORT}") or ports.get("admin") != ADMIN_PORT:
        problem(where, f"admin listener {admin!r} / container port {ports.get('admin')} is not :{ADMIN_PORT}")
    for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or ports.get(get.get("port"), get.get("port")) != ADMIN_PORT:
            problem(where, f"{probe} must GET {path} on the admin port, got {get}")
    if env.get("KARST_NODE_ID_FROM_HOSTNAME") != "true":
        problem(where, "node ids must come from the pod names (KARST_NODE_ID_FROM_HOSTNAME)")
    headless = spec.get("serviceName")
    vs = voters(env)
    if sorted(vs) != list(range(spec.get("replicas", 1))):
        problem(where, f"voters {sorted(vs)} are not the pods 0..{spec.get('replicas', 1) - 1}")
    for node, (host, port) in vs.items():
        if not host.startswith(f"{name}-{node}.{headless}."):
            problem(where, f"voter {node}@{host} is not pod {name}-{node} under {headless}")
        if int(port) not in ports.values():
            problem(where, f"voter port {port} is not a container port")
    for lname, (host, _) in advertised.items():
        if not host.startswith(f"$(POD_NAME).{headless}."):
            problem(where, f"advertised {lname} host {host} is not the pod's DNS name under {headless}")
    if not pod["spec"].get("terminationGracePeriodSeconds") or "preStop" not in container.get("lifecycle", {}):
        problem(where, "graceful shutdown needs terminationGracePeriodSeconds and a preStop hook")
    if not spec.get("volumeClaimTemplates"):
        problem(where, "no volumeClaimTemplates")
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    for vct in spec.get("volumeClaimTemplates", []):
        if mounts.get(vct["metadata"]["name"]) != env.get("KARST_LOG_DIRS"):
            problem(where, f"volume {vct['metadata']['name']} is not mounted at log.dirs {env.get('KARST_LOG_DIRS')}")
    services = {o["metadata"]["name"]: (w, o) for w, o in by_kind.get("Service", [])}
    if headless not in services:
        problem(where, f"serviceName {headless} is not a Service here")
    else:
        w, h = services[headless]
        if h["spec"].get("clusterIP") != "None" or not h["spec"].get("publishNotReadyAddresses"):
            problem(w, f"{headless} must be headless and publish not-ready pods (the quorum forms before readiness)")
    for sname, (w, s) in services.items():
        if s["spec"].get("selector", {}).items() - labels.items():
            problem(w, f"Service {sname} selects no StatefulSet pod")
        for p in s["spec"].get("ports", []):
            target = p.get("targetPort", p["port"])
            if ports.get(target, target) not in ports.values():
                problem(w, f"Service {sname} port {p['port']} targets {target}, not a container port")
    pdbs = by_kind.get("PodDisruptionBudget", [])
    if not pdbs:
        problem(rel(dirpath), "no PodDisruptionBudget")
    for w, pdb in pdbs:
        if pdb["spec"]["selector"]["matchLabels"].items() - labels.items():
            problem(w, "PodDisruptionBudget selects no StatefulSet pod")


def main():
    for p in sorted((ROOT / "docker").rglob("*")) + sorted((ROOT / "deploy").rglob("*")):
        if p.suffix in (".yml", ".yaml"):
            load_yaml_docs(p)
    check_compose(ROOT / "docker/compose.yml")
    check_compose(ROOT / "docker/compose.cluster.yml")
    check_dashboard(ROOT / "docker/grafana/dashboards/karst.json")
    check_k8s(ROOT / "deploy/k8s")
    dockerfile = (ROOT / "docker/Dockerfile").read_text()
    for needle in ("USER 65532", "VOLUME /data", f"EXPOSE 9092", str(ADMIN_PORT)):
        if needle not in dockerfile:
            problem("docker/Dockerfile", f"missing `{needle}`")
    if problems:
        print("\n".join(problems))
        print(f"check-deploy: {len(problems)} problem(s)")
        return 1
    print("check-deploy: compose files, Kubernetes manifests, Prometheus and Grafana files are consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
