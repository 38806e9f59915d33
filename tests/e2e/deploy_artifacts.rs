//! What can be checked here of `deploy/` without Docker or Kubernetes: every Kubernetes
//! manifest against the vendored Kubernetes 1.33 schemas (and SpinApp against its schema),
//! the Compose files against the Compose Specification, the Kustomize layout, the variables
//! and settings the manifests name against those spin.toml declares and the bridge reads,
//! the Citus stack's wiring (the application on the coordinator, every node configured and
//! registered before the migration), and the Dockerfiles against the builds they stand for.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::{Value, json};
use wasmpay_test_support::{paths, spin};

fn deploy() -> PathBuf {
    paths::repo_root().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_documents(path: &Path) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(&read(path))
        .map(|document| {
            let value = serde_yaml::Value::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_json::to_value(value).unwrap()
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// Every file under `dir` whose name ends with `suffix`.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The Kubernetes objects of the manifests (not the Kustomize files), with their file.
fn objects() -> Vec<(PathBuf, Value)> {
    files(&deploy().join("kubernetes"), ".yaml")
        .into_iter()
        .filter(|path| path.file_name().unwrap() != "kustomization.yaml")
        .flat_map(|path| yaml_documents(&path).into_iter().map(move |doc| (path.clone(), doc)))
        .collect()
}

/// The first object of `kind` in the manifests.
fn object(kind: &str) -> Value {
    objects().into_iter().map(|(_, o)| o).find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

/// Validators by `apiVersion kind`, refs into the vendored Kubernetes definitions resolved
/// offline.
struct Schemas {
    validators: BTreeMap<String, jsonschema::Validator>,
}

impl Schemas {
    fn load() -> Self {
        let dir = deploy().join("schemas");
        let definitions: Value = serde_json::from_str(&read(&dir.join("kubernetes/_definitions.json"))).unwrap();
        let registry = jsonschema::Registry::new()
            .add("https://kubernetes.io/api/_definitions.json", definitions)
            .unwrap()
            .prepare()
            .unwrap();
        let kinds = [
            ("apps/v1 Deployment", "kubernetes/deployment-apps-v1.json"),
            ("batch/v1 Job", "kubernetes/job-batch-v1.json"),
            ("v1 Service", "kubernetes/service-v1.json"),
            ("v1 ConfigMap", "kubernetes/configmap-v1.json"),
            ("v1 Secret", "kubernetes/secret-v1.json"),
            ("v1 Namespace", "kubernetes/namespace-v1.json"),
            ("policy/v1 PodDisruptionBudget", "kubernetes/poddisruptionbudget-policy-v1.json"),
            ("autoscaling/v2 HorizontalPodAutoscaler", "kubernetes/horizontalpodautoscaler-autoscaling-v2.json"),
            ("core.spinkube.dev/v1alpha1 SpinApp", "spinkube/spinapp-core.spinkube.dev-v1alpha1.json"),
        ];
        let validators = kinds
            .into_iter()
            .map(|(kind, file)| {
                let schema: Value = serde_json::from_str(&read(&dir.join(file))).unwrap();
                let validator = jsonschema::options()
                    .with_registry(&registry)
                    .build(&schema)
                    .unwrap_or_else(|e| panic!("{file}: {e}"));
                (kind.to_owned(), validator)
            })
            .collect();
        Self { validators }
    }

    /// Why `object` is not a valid Kubernetes object of its kind (empty when it is).
    fn problems(&self, object: &Value) -> Vec<String> {
        let kind = format!("{} {}", object["apiVersion"].as_str().unwrap_or("?"), object["kind"].as_str().unwrap_or("?"));
        let Some(validator) = self.validators.get(&kind) else {
            return vec![format!("{kind}: no schema vendored for this kind")];
        };
        let mut problems: Vec<String> =
            validator.iter_errors(object).map(|e| format!("{kind} at {}: {e}", e.instance_path())).collect();
        if object["metadata"]["name"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{kind}: no metadata.name"));
        }
        problems
    }
}

#[test]
fn every_kubernetes_manifest_validates_against_its_schema() {
    let schemas = Schemas::load();
    let objects = objects();
    let kinds: BTreeSet<String> = objects.iter().map(|(_, o)| o["kind"].as_str().unwrap_or_default().to_owned()).collect();
    for expected in ["SpinApp", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job", "Deployment", "Service", "ConfigMap"] {
        assert!(kinds.contains(expected), "deploy/kubernetes has no {expected}");
    }
    let problems: Vec<String> = objects
        .iter()
        .flat_map(|(path, object)| schemas.problems(object).into_iter().map(move |p| format!("{}: {p}", path.display())))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_schemas_refuse_what_kubernetes_would_refuse_or_drop() {
    let schemas = Schemas::load();
    let spinapp = object("SpinApp");
    let mut typo = spinapp.clone();
    typo["spec"]["replicaz"] = json!(2);
    assert!(!schemas.problems(&typo).is_empty(), "an unknown SpinApp field passed");
    let mut both = spinapp.clone();
    both["spec"]["replicas"] = json!(2);
    assert!(!schemas.problems(&both).is_empty(), "replicas beside enableAutoscaling passed");
    let mut unnamed = spinapp;
    unnamed["spec"]["variables"][0] = json!({ "value": "x" });
    assert!(!schemas.problems(&unnamed).is_empty(), "a variable without a name passed");

    let deployment = object("Deployment");
    let mut wrong = deployment.clone();
    wrong["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!(3);
    assert!(!schemas.problems(&wrong).is_empty(), "a number where Kubernetes wants a string passed");
    let mut unknown = deployment;
    unknown["spec"]["replica"] = json!(2);
    assert!(!schemas.problems(&unknown).is_empty(), "an unknown Deployment field passed");
}

#[test]
fn the_kustomizations_name_files_and_objects_that_exist() {
    let kustomizations = files(&deploy().join("kubernetes"), "kustomization.yaml");
    assert_eq!(kustomizations.len(), 2, "a base and the local overlay");
    let objects = objects();
    let names: BTreeSet<(String, String)> = objects
        .iter()
        .map(|(_, o)| (o["kind"].as_str().unwrap().to_owned(), o["metadata"]["name"].as_str().unwrap().to_owned()))
        .collect();
    let images: BTreeSet<String> = objects
        .iter()
        .flat_map(|(_, o)| {
            o["spec"]["template"]["spec"]["containers"].as_array().cloned().unwrap_or_default().into_iter().map(|c| c["image"].clone())
        })
        .filter_map(|image| image.as_str().map(|i| i.split(':').next().unwrap().to_owned()))
        .collect();
    for path in kustomizations {
        let kustomization = &yaml_documents(&path)[0];
        assert_eq!(kustomization["kind"], "Kustomization", "{}", path.display());
        for resource in kustomization["resources"].as_array().unwrap() {
            let target = path.parent().unwrap().join(resource.as_str().unwrap());
            assert!(target.is_file() || target.join("kustomization.yaml").is_file(), "{}: {resource} is missing", path.display());
        }
        for patch in kustomization["patches"].as_array().cloned().unwrap_or_default() {
            let target = (patch["target"]["kind"].as_str().unwrap().to_owned(), patch["target"]["name"].as_str().unwrap().to_owned());
            assert!(names.contains(&target), "{}: the patch targets {target:?}, which no manifest defines", path.display());
        }
        for image in kustomization["images"].as_array().cloned().unwrap_or_default() {
            assert!(images.contains(image["name"].as_str().unwrap()), "{}: no container uses {}", path.display(), image["name"]);
        }
    }
}

/// spin.toml's application variables: name → required.
fn declared_variables() -> BTreeMap<String, bool> {
    let manifest: toml::Table = read(&paths::repo_root().join("spin.toml")).parse().unwrap();
    manifest["variables"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(name, spec)| (name.clone(), spec.get("required").and_then(toml::Value::as_bool).unwrap_or(false)))
        .collect()
}

fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap();
    let authority = rest.split('/').next().unwrap();
    authority.rsplit('@').next().unwrap().to_owned()
}

/// `key=value` literals of the local overlay's generated Secret.
fn local_secret() -> BTreeMap<String, String> {
    let overlay = &yaml_documents(&deploy().join("kubernetes/overlays/local/kustomization.yaml"))[0];
    overlay["secretGenerator"][0]["literals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|literal| {
            let (key, value) = literal.as_str().unwrap().split_once('=').unwrap();
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn the_manifests_give_the_application_the_variables_spin_toml_declares() {
    let declared = declared_variables();
    let required: BTreeSet<&String> = declared.iter().filter(|(_, required)| **required).map(|(name, _)| name).collect();

    // SpinKube.
    let spinapp = object("SpinApp");
    let variables = spinapp["spec"]["variables"].as_array().unwrap();
    let named: BTreeSet<String> = variables.iter().map(|v| v["name"].as_str().unwrap().to_owned()).collect();
    for name in &named {
        assert!(declared.contains_key(name), "the SpinApp sets {name}, which spin.toml does not declare");
    }
    for name in &required {
        assert!(named.contains(*name), "the SpinApp does not set the required variable {name}");
    }
    let secret = local_secret();
    for variable in variables {
        if let Some(key) = variable["valueFrom"]["secretKeyRef"]["key"].as_str() {
            assert!(secret.contains_key(key), "the local overlay's secret has no {key}");
        }
    }
    let db_host = variables.iter().find(|v| v["name"] == "db_host").unwrap()["value"].as_str().unwrap();
    assert_eq!(db_host, host_port(&secret["db_url"]), "db_host must be the host:port of db_url (the allowed outbound host)");

    // Compose.
    let compose = &yaml_documents(&deploy().join("compose.yaml"))[0];
    let spin_env = compose["services"]["spin"]["environment"].as_object().unwrap();
    let mut set = BTreeSet::new();
    for key in spin_env.keys() {
        let name = key.strip_prefix("SPIN_VARIABLE_").unwrap_or_else(|| panic!("compose gives spin {key}")).to_ascii_lowercase();
        assert!(declared.contains_key(&name), "compose sets {name}, which spin.toml does not declare");
        set.insert(name);
    }
    for name in &required {
        assert!(set.contains(*name), "compose does not set the required variable {name}");
    }
    assert_eq!(
        spin_env["SPIN_VARIABLE_DB_HOST"].as_str().unwrap(),
        host_port(spin_env["SPIN_VARIABLE_DB_URL"].as_str().unwrap())
    );
    // The bridge opens what the components seal: the same key under the same id.
    let bridge_env = compose["services"]["bridge"]["environment"].as_object().unwrap();
    let event_keys = bridge_env["EVENT_KEYS"].as_str().unwrap();
    let sealing = format!("{}={}", spin_env["SPIN_VARIABLE_EVENT_ENCRYPTION_KEY_ID"].as_str().unwrap(), spin_env["SPIN_VARIABLE_EVENT_ENCRYPTION_KEY"].as_str().unwrap());
    assert!(event_keys.split(',').any(|k| k == sealing), "the bridge cannot open what the components seal");
}

/// The environment variables `bridge run` reads, from its own --help.
fn bridge_settings() -> BTreeSet<String> {
    let output = std::process::Command::new(paths::binary("bridge")).args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    help.split("[env: ").skip(1).map(|rest| rest.split(['=', ']']).next().unwrap().to_owned()).collect()
}

#[test]
fn the_manifests_configure_the_bridge_with_settings_it_reads() {
    let known = bridge_settings();
    assert!(known.contains("KAFKA_SECURITY_PROTOCOL") && known.contains("DATABASE_URL"), "{known:?}");
    let secret = local_secret();
    let mut checked = 0;
    for (path, object) in objects() {
        if object["kind"] == "ConfigMap" {
            for key in object["data"].as_object().unwrap().keys() {
                assert!(known.contains(key), "{}: the bridge reads no {key}", path.display());
                checked += 1;
            }
        }
        let containers = object["spec"]["template"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
        for container in containers {
            let env = container["env"].as_array().cloned().unwrap_or_default();
            // Variables only used to build others ($(NAME)) need not be the bridge's.
            let referenced: BTreeSet<String> = env
                .iter()
                .filter_map(|e| e["value"].as_str())
                .flat_map(|v| v.split("$(").skip(1).map(|r| r.split(')').next().unwrap().to_owned()))
                .collect();
            for variable in env {
                let name = variable["name"].as_str().unwrap();
                assert!(known.contains(name) || referenced.contains(name), "{}: the bridge reads no {name}", path.display());
                if let Some(key) = variable["valueFrom"]["secretKeyRef"]["key"].as_str() {
                    let optional = variable["valueFrom"]["secretKeyRef"]["optional"] == true;
                    assert!(optional || secret.contains_key(key), "{}: the local secret has no {key}", path.display());
                }
                checked += 1;
            }
        }
    }
    let compose = &yaml_documents(&deploy().join("compose.yaml"))[0];
    for service in ["migrate", "bridge"] {
        for key in compose["services"][service]["environment"].as_object().unwrap().keys() {
            assert!(known.contains(key), "compose's {service}: the bridge reads no {key}");
            checked += 1;
        }
    }
    assert!(checked > 10, "{checked} settings checked");
}

/// `deploy/compose.yaml` and the Citus override that goes with it.
fn compose_files() -> [PathBuf; 2] {
    [
        deploy().join("compose.yaml"),
        deploy().join("citus/compose.yaml"),
    ]
}

#[test]
fn the_compose_files_validate_against_the_compose_specification() {
    let schema: Value =
        serde_json::from_str(&read(&deploy().join("schemas/compose/compose-spec.json"))).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for path in compose_files() {
        let file = &yaml_documents(&path)[0];
        let problems: Vec<String> = validator
            .iter_errors(file)
            .map(|e| format!("{} at {}: {e}", path.display(), e.instance_path()))
            .collect();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
    let mut typo = yaml_documents(&deploy().join("citus/compose.yaml"))[0].clone();
    let migrate = typo["services"]["migrate"].as_object_mut().unwrap();
    let depends_on = migrate.remove("depends_on").unwrap();
    migrate.insert("depends_onn".to_owned(), depends_on);
    assert!(!validator.is_valid(&typo), "an unknown service key passed");
}

/// The Compose files laid over one another as Compose merges an override: mappings key by
/// key, anything else replaced. (Compose merges a few sequences by key, `volumes` by mount
/// target; the override's sequences are whole command lines and a node's one data volume,
/// where both rules give the same result.)
fn merged_compose(paths: &[PathBuf]) -> Value {
    fn lay_over(base: &mut Value, over: &Value) {
        match (base, over) {
            (Value::Object(base), Value::Object(over)) => {
                for (key, value) in over {
                    lay_over(base.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
            (base, over) => *base = over.clone(),
        }
    }
    let mut merged = Value::Null;
    for path in paths {
        lay_over(&mut merged, &yaml_documents(path)[0]);
    }
    merged
}

/// The node names a script passes to `function('<name>', 5432)`.
fn node_arguments<'a>(script: &'a str, function: &str) -> Vec<&'a str> {
    script
        .split(format!("{function}('").as_str())
        .skip(1)
        .map(|rest| {
            let (name, after) = rest.split_once('\'').unwrap();
            assert!(
                after.starts_with(", 5432)"),
                "{function}('{name}'{after}…: every node listens on 5432"
            );
            name
        })
        .collect()
}

/// `-c name=value` settings of a `postgres` command line.
fn server_settings(command: &Value) -> BTreeMap<String, String> {
    let words: Vec<&str> = command
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    words
        .windows(2)
        .filter(|pair| pair[0] == "-c")
        .map(|pair| {
            let (name, value) = pair[1].split_once('=').unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn on_citus_the_application_reaches_the_coordinator_only_and_every_node_is_ready_before_the_migration()
 {
    let compose = merged_compose(&compose_files());
    let services = compose["services"].as_object().unwrap();
    let init = &services["citus-init"];
    let script: String = init["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line.as_str().unwrap())
        .collect();
    let [coordinator] = node_arguments(&script, "citus_set_coordinator_host")[..] else {
        panic!("citus-init sets the coordinator's host once: {script}")
    };
    let registered: BTreeSet<&str> = node_arguments(&script, "citus_add_node")
        .into_iter()
        .collect();
    assert!(
        registered.len() >= 2,
        "citus-init registers {registered:?}: two workers at least"
    );
    let nodes: BTreeMap<&String, &Value> = services
        .iter()
        .filter(|(_, service)| {
            service["image"]
                .as_str()
                .is_some_and(|image| image.starts_with("citusdata/citus:"))
                && service["command"][0] == "postgres"
        })
        .collect();
    for node in registered.iter().chain([&coordinator]) {
        assert!(
            nodes.keys().any(|name| name == node),
            "{node} is no Citus node of the stack"
        );
    }

    // Every database URL the stack gives, and the one host Spin lets the components reach.
    let coordinator_address = format!("{coordinator}:5432");
    let mut urls = Vec::new();
    for (name, service) in services {
        for (key, value) in service["environment"].as_object().into_iter().flatten() {
            if let Some(url) = value.as_str().filter(|v| v.starts_with("postgres://")) {
                assert_eq!(
                    host_port(url),
                    coordinator_address,
                    "{name}'s {key} must name the coordinator"
                );
                urls.push(url);
            }
        }
    }
    assert_eq!(
        urls.len(),
        3,
        "the migration's, the bridge's and the components' URLs"
    );
    assert_eq!(
        services["spin"]["environment"]["SPIN_VARIABLE_DB_HOST"],
        coordinator_address.as_str()
    );
    let database = urls[0]
        .split('/')
        .nth(3)
        .unwrap()
        .split('?')
        .next()
        .unwrap();

    let mut data_volumes = BTreeSet::new();
    for (name, node) in &nodes {
        let settings = server_settings(&node["command"]);
        let setting = |key: &str| settings.get(key).map(String::as_str);
        assert!(
            setting("shared_preload_libraries")
                .is_some_and(|libraries| libraries.split(',').any(|l| l.trim() == "citus")),
            "{name} does not load citus"
        );
        let max_connections: u32 = setting("max_connections").unwrap_or("100").parse().unwrap();
        let max_prepared: u32 = setting("max_prepared_transactions")
            .unwrap_or("0")
            .parse()
            .unwrap();
        assert!(
            max_prepared >= max_connections,
            "{name}: a transaction across workers commits in two phases, from any connection"
        );
        assert_eq!(
            setting("wal_level"),
            Some("logical"),
            "{name}: shards move online by logical replication"
        );
        let environment = &node["environment"];
        assert_eq!(
            environment["POSTGRES_DB"], database,
            "{name}: the image creates the citus extension in POSTGRES_DB"
        );
        assert_eq!(
            environment["PGPASSWORD"], environment["POSTGRES_PASSWORD"],
            "{name} cannot connect to the other nodes"
        );
        let health: Vec<&str> = node["healthcheck"]["test"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            health.contains(&"pg_isready") && health.contains(&"-h"),
            "{name}: ready over TCP, not the init-time socket"
        );
        let volume = node["volumes"][0]
            .as_str()
            .unwrap()
            .split(':')
            .next()
            .unwrap();
        assert!(
            data_volumes.insert(volume),
            "{name} shares the data volume {volume}"
        );
        if *name != coordinator {
            let on_demand = node["profiles"]
                .as_array()
                .is_some_and(|profiles| !profiles.is_empty());
            assert_eq!(
                registered.contains(name.as_str()),
                !on_demand,
                "{name}: a worker the stack starts is registered by citus-init, one started on demand by hand"
            );
        }
    }

    for node in registered.iter().chain([&coordinator]) {
        assert!(
            script
                .lines()
                .any(|line| line.contains(&format!("-h {node} "))
                    && line.contains("CREATE EXTENSION IF NOT EXISTS citus")),
            "citus-init does not create the extension on {node}"
        );
        assert_eq!(
            init["depends_on"][node]["condition"], "service_healthy",
            "citus-init starts before {node} is ready"
        );
    }
    assert_eq!(
        services["migrate"]["depends_on"]["citus-init"]["condition"],
        "service_completed_successfully",
        "the migration distributes the tables over the workers registered before it"
    );
    for service in ["bridge", "spin"] {
        assert_eq!(
            services[service]["depends_on"]["migrate"]["condition"],
            "service_completed_successfully",
            "{service}"
        );
    }
}

/// The instructions of one Dockerfile stage, continuation lines joined.
fn dockerfile(path: &Path) -> Vec<Vec<String>> {
    let text = read(path).replace("\\\n", " ");
    let mut stages: Vec<Vec<String>> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if line.starts_with("FROM ") {
            stages.push(Vec::new());
        }
        stages.last_mut().expect("a Dockerfile starts with FROM").push(line.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    stages
}

#[test]
fn the_bridge_image_builds_the_native_profile_binary_and_runs_it_unprivileged() {
    let cargo: toml::Table = read(&paths::repo_root().join("Cargo.toml")).parse().unwrap();
    assert!(cargo["profile"].get("native").is_some(), "Cargo.toml has no native profile");
    let stages = dockerfile(&deploy().join("bridge/Dockerfile"));
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let build = stages[0].join("\n");
    assert!(build.contains("cargo build --locked --profile native -p bridge"), "{build}");
    assert!(build.contains("target/native/bridge"), "{build}");
    let runtime = &stages[1];
    let has = |prefix: &str| runtime.iter().find(|i| i.starts_with(prefix)).cloned().unwrap_or_default();
    assert!(has("FROM ").contains("-slim"), "a small runtime base");
    assert!(has("COPY --from=build").ends_with("/usr/local/bin/bridge"));
    let user = has("USER ").trim_start_matches("USER ").split(':').next().unwrap().parse::<u32>().expect("a numeric user");
    assert!(user >= 1000, "runs as a non-root user");
    assert!(has("HEALTHCHECK ").ends_with(r#"CMD ["bridge", "healthcheck"]"#), "{}", has("HEALTHCHECK "));
    assert_eq!(has("ENTRYPOINT "), r#"ENTRYPOINT ["bridge"]"#);
    assert!(bridge_settings().contains("OPS_LISTEN"));
}

#[test]
fn the_spin_image_builds_every_component_and_plugin_as_spin_build_does() {
    let stages = dockerfile(&deploy().join("spin/Dockerfile"));
    let build = stages[0].join("\n");
    let mut command = "cargo build --locked --target wasm32-wasip2 --release".to_owned();
    for component in paths::COMPONENTS {
        command.push_str(&format!(" -p {component}"));
    }
    assert!(build.contains(&command), "{build}");
    // The plugins in a cargo invocation of their own, as spin.toml's build does.
    let mut policies = "cargo build --locked --target wasm32-wasip2 --release".to_owned();
    for package in paths::RUST_POLICIES {
        policies.push_str(&format!(" -p {package}"));
    }
    assert!(build.contains(&policies), "{build}");
    assert!(build.contains("npm ci --prefix components/web/app --ignore-scripts") && build.contains("node components/web/app/build.mjs"));
    let last = stages.last().unwrap().join("\n");
    for component in paths::COMPONENTS {
        assert!(last.contains(&format!("/src/target/wasm32-wasip2/release/{component}.wasm")), "{component}.wasm is not copied");
    }
    for (_, package) in paths::POLICY_SLOTS {
        let file = format!("{}.wasm", package.replace('-', "_"));
        assert!(last.contains(&format!("/src/target/wasm32-wasip2/release/{file}")), "{file} is not copied");
        assert!(read(&paths::repo_root().join("spin.toml")).contains(&format!("target/wasm32-wasip2/release/{file}")));
    }
    assert!(last.contains("COPY spin.toml runtime-config.toml"));
    let entrypoint = last.lines().find(|l| l.starts_with("ENTRYPOINT ")).expect("an ENTRYPOINT");
    let flags: Vec<String> = spin::instance_args(&spin::instance_flags()).iter().map(|arg| format!("\"{arg}\"")).collect();
    assert!(entrypoint.contains(&flags.join(", ")), "spin up runs without wasmpay's instance flags {flags:?}: {entrypoint}");
    let ignored = read(&paths::repo_root().join(".dockerignore"));
    assert!(ignored.lines().any(|l| l == "target/"), "the build context leaves target/ out");
}
