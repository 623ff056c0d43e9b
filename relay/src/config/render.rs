//! `outbox-relay config`: the effective configuration, as the relay uses it (file,
//! `RELAY__` variables and defaults), in the shape it is written in, secrets as `***`
//! (`Secret`, and Kafka properties that hold credentials).

use yaml_rust2::yaml::{Hash, Yaml};
use yaml_rust2::YamlEmitter;

use super::Config;
use crate::cli::ConfigOutput;

pub fn render(config: &Config, output: ConfigOutput) -> String {
    let value = serde_json::to_value(config).expect("the configuration serializes");
    match output {
        ConfigOutput::Json => {
            serde_json::to_string_pretty(&value).expect("a JSON value serializes")
        }
        ConfigOutput::Yaml => {
            let mut text = String::new();
            YamlEmitter::new(&mut text)
                .dump(&yaml(value))
                .expect("writing to a String cannot fail");
            text
        }
    }
}

fn yaml(value: serde_json::Value) -> Yaml {
    use serde_json::Value;
    match value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s),
        Value::Array(items) => Yaml::Array(items.into_iter().map(yaml).collect()),
        Value::Object(map) => {
            let mut hash = Hash::new();
            for (k, v) in map {
                hash.insert(Yaml::String(k), yaml(v));
            }
            Yaml::Hash(hash)
        }
    }
}
