//! `openapi.yaml` as a living contract: every response an end-to-end test receives is
//! checked against the operation it answers — the status must be documented, the media
//! type must match, and a JSON body must validate against the documented schema.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use jsonschema::Validator;
use serde_json::Value;
use wasmpay_test_support::paths;

pub struct OpenApi {
    document: Value,
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

impl OpenApi {
    pub fn get() -> &'static OpenApi {
        static SPEC: OnceLock<OpenApi> = OnceLock::new();
        SPEC.get_or_init(|| {
            let path = paths::repo_root().join("openapi.yaml");
            let text = std::fs::read_to_string(&path).expect("openapi.yaml is readable");
            let document: Value = serde_yaml::from_str(&text).expect("openapi.yaml is valid YAML");
            assert_eq!(document["openapi"].as_str().map(|v| &v[..3]), Some("3.1"), "OpenAPI 3.1");
            OpenApi {
                document,
                validators: Mutex::new(HashMap::new()),
            }
        })
    }

    pub fn document(&self) -> &Value {
        &self.document
    }

    /// The path template (`/accounts/{id}`) that documents a concrete path, preferring the
    /// one with the fewest parameters, as routers do.
    pub fn template_for(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        self.document["paths"]
            .as_object()?
            .keys()
            .filter(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                parts.len() == segments.len()
                    && parts
                        .iter()
                        .zip(&segments)
                        .all(|(part, segment)| part.starts_with('{') || part == segment)
            })
            .min_by_key(|template| template.matches('{').count())
            .cloned()
    }

    /// Checks one response. `Err` explains the first way it breaks the contract.
    pub fn check(&self, method: &str, path: &str, status: u16, content_type: Option<&str>, body: &[u8]) -> Result<(), String> {
        let method = method.to_ascii_lowercase();
        assert!(METHODS.contains(&method.as_str()), "unexpected method {method}");
        let template = self
            .template_for(path)
            .ok_or_else(|| format!("{path} is not documented in openapi.yaml"))?;
        let operation = &self.document["paths"][&template][&method];
        if operation.is_null() {
            return Err(format!("{} {template} is not documented", method.to_uppercase()));
        }
        let responses = &operation["responses"];
        let class = format!("{}XX", status / 100);
        let (key, response) = [status.to_string(), class, "default".to_owned()]
            .into_iter()
            .find_map(|key| {
                let response = &responses[&key];
                (!response.is_null()).then(|| (key.clone(), response.clone()))
            })
            .ok_or_else(|| format!("{} {template} does not document status {status}", method.to_uppercase()))?;
        let response = self.resolve(&response);
        let Some(content) = response["content"].as_object() else {
            return if body.is_empty() {
                Ok(())
            } else {
                Err(format!("{} {template} {status}: documented without a body, got {} bytes", method.to_uppercase(), body.len()))
            };
        };
        let media_type = content_type
            .map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
            .ok_or_else(|| format!("{} {template} {status}: no content-type", method.to_uppercase()))?;
        let media = content
            .get(&media_type)
            .ok_or_else(|| format!("{} {template} {status}: content-type {media_type} is not documented", method.to_uppercase()))?;
        let instance: Value = serde_json::from_slice(body)
            .map_err(|e| format!("{} {template} {status}: body is not JSON: {e}", method.to_uppercase()))?;
        let validator_key = format!("{method} {template} {key} {media_type}");
        let validator = self.validator(&validator_key, &media["schema"])?;
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} {template} {status}: body does not match the schema:\n  {}\nbody: {instance}",
                method.to_uppercase(),
                errors.join("\n  ")
            ))
        }
    }

    /// Checks a problem+json body against the shared `Problem` schema (for requests outside
    /// the documented paths, such as unknown routes).
    pub fn check_problem(&self, body: &[u8]) -> Result<(), String> {
        let instance: Value = serde_json::from_slice(body).map_err(|e| format!("problem body is not JSON: {e}"))?;
        let schema = serde_json::json!({ "$ref": "#/components/schemas/Problem" });
        let validator = self.validator("problem", &schema)?;
        match validator.validate(&instance) {
            Ok(()) => Ok(()),
            Err(e) => Err(format!("not a valid problem: {e}; body: {instance}")),
        }
    }

    /// Whether `instance` is valid against the schema at `pointer`, a JSON pointer into the
    /// document such as `/components/schemas/PositiveAmount`.
    pub fn accepts(&self, pointer: &str, instance: &Value) -> bool {
        assert!(self.document.pointer(pointer).is_some(), "openapi.yaml has no {pointer}");
        let schema = serde_json::json!({ "$ref": format!("#{pointer}") });
        let validator = self.validator(pointer, &schema).unwrap_or_else(|e| panic!("{e}"));
        validator.is_valid(instance)
    }

    /// Follows a `$ref` to `#/components/responses/...`.
    fn resolve(&self, value: &Value) -> Value {
        match value["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
            Some(pointer) => self.resolve(self.document.pointer(pointer).unwrap_or(&Value::Null)),
            None => value.clone(),
        }
    }

    fn validator(&self, key: &str, schema: &Value) -> Result<Arc<Validator>, String> {
        let mut validators = self.validators.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(validator) = validators.get(key) {
            return Ok(validator.clone());
        }
        // References point into the document's components: give the schema that root.
        let mut root = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.document["components"],
            "allOf": [schema],
        });
        if schema.is_null() {
            root["allOf"] = serde_json::json!([true]);
        }
        let validator = Arc::new(
            jsonschema::options()
                .should_validate_formats(true)
                .build(&root)
                .map_err(|e| format!("invalid schema for {key}: {e}"))?,
        );
        validators.insert(key.to_owned(), validator.clone());
        Ok(validator)
    }
}

#[test]
fn every_operation_documents_its_errors_as_problems() {
    let spec = OpenApi::get();
    for (template, item) in spec.document()["paths"].as_object().expect("paths") {
        for method in METHODS {
            let operation = &item[method];
            if operation.is_null() {
                continue;
            }
            assert!(
                operation["operationId"].is_string(),
                "{method} {template} needs an operationId"
            );
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses.contains_key("default"),
                "{method} {template} must document a default (problem) response"
            );
        }
    }
}

/// The routes the components register (their `lib.rs` route tables) and the operations
/// openapi.yaml documents are the same set.
#[test]
fn the_document_lists_exactly_the_routes_the_components_serve() {
    use std::collections::BTreeSet;
    let mut served = BTreeSet::new();
    for component in crate::app::API_COMPONENTS {
        let table = std::fs::read_to_string(paths::repo_root().join(format!("components/{component}/src/lib.rs")))
            .expect("the component's route table");
        for line in table.lines() {
            for method in METHODS {
                let Some(rest) = line.trim().strip_prefix(&format!(".{method}(\"")) else {
                    continue;
                };
                let path = rest.split('"').next().unwrap_or_default();
                let template: Vec<String> = path
                    .split('/')
                    .map(|segment| match segment.strip_prefix(':') {
                        Some(name) => format!("{{{name}}}"),
                        None => segment.to_owned(),
                    })
                    .collect();
                served.insert(format!("{} {}", method.to_uppercase(), template.join("/")));
            }
        }
    }
    let documented: BTreeSet<String> = OpenApi::get().document()["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|method| !item[**method].is_null())
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    assert!(served.len() > 20, "the route tables were read: {served:?}");
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(undocumented.is_empty() && unserved.is_empty(), "undocumented: {undocumented:?}; not served: {unserved:?}");
}
