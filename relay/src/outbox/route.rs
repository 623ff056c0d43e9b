//! Choosing an event's destination from its aggregate type.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::RouteConfig;

/// The checker a sink provides (`Publisher::validate_destination`).
pub type DestinationCheck = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Resolves and caches destinations; a destination the sink would reject is an error
/// here, once, rather than a broker error per event.
pub struct Router {
    template: String,
    overrides: HashMap<String, Arc<str>>,
    cache: HashMap<String, Result<Arc<str>, String>>,
    check: DestinationCheck,
}

/// More distinct aggregate types than this are resolved without caching, so a bug that
/// writes unbounded aggregate types cannot grow memory.
const CACHE_LIMIT: usize = 10_000;

const PLACEHOLDER: &str = "{aggregatetype}";

impl Router {
    pub fn new(config: &RouteConfig, check: DestinationCheck) -> Result<Self, String> {
        let rest = config.template.replace(PLACEHOLDER, "");
        if rest.contains('{') || rest.contains('}') {
            return Err(format!(
                "outbox.route.template: {:?} has a placeholder other than {PLACEHOLDER}",
                config.template
            ));
        }
        let mut overrides = HashMap::new();
        for (i, o) in config.overrides.iter().enumerate() {
            check(&o.destination)
                .map_err(|e| format!("outbox.route.overrides[{i}].destination: {e}"))?;
            overrides.insert(o.aggregate_type.clone(), Arc::from(o.destination.as_str()));
        }
        Ok(Router {
            template: config.template.clone(),
            overrides,
            cache: HashMap::new(),
            check,
        })
    }

    /// The destination for `aggregate_type`, or why there is none.
    pub fn route(&mut self, aggregate_type: &str) -> Result<Arc<str>, String> {
        if let Some(hit) = self.cache.get(aggregate_type) {
            return hit.clone();
        }
        let resolved = self.resolve(aggregate_type);
        if self.cache.len() < CACHE_LIMIT {
            self.cache
                .insert(aggregate_type.to_owned(), resolved.clone());
        }
        resolved
    }

    fn resolve(&self, aggregate_type: &str) -> Result<Arc<str>, String> {
        if let Some(d) = self.overrides.get(aggregate_type) {
            return Ok(d.clone());
        }
        if self.template.is_empty() {
            return Err(format!(
                "no route for aggregate type {aggregate_type:?}: it has no override and outbox.route.template is empty"
            ));
        }
        let destination = self.template.replace(PLACEHOLDER, aggregate_type);
        (self.check)(&destination)
            .map_err(|e| format!("no valid route for aggregate type {aggregate_type:?}: {e}"))?;
        Ok(Arc::from(destination))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteOverride;

    fn kafka_like() -> DestinationCheck {
        Arc::new(|d: &str| {
            if d.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
            {
                Ok(())
            } else {
                Err(format!("{d:?} has characters a topic cannot have"))
            }
        })
    }

    #[test]
    fn overrides_win_then_template() {
        let cfg = RouteConfig {
            template: "outbox.event.{aggregatetype}".into(),
            overrides: vec![RouteOverride {
                aggregate_type: "Order".into(),
                destination: "orders".into(),
            }],
        };
        let mut r = Router::new(&cfg, kafka_like()).unwrap();
        assert_eq!(&*r.route("Order").unwrap(), "orders");
        assert_eq!(&*r.route("Customer").unwrap(), "outbox.event.Customer");
        let e = r.route("bad type").unwrap_err();
        assert!(e.contains("bad type"), "{e}");
        // Cached errors stay errors.
        assert!(r.route("bad type").is_err());
    }

    #[test]
    fn template_less_routing_names_the_missing_route() {
        let cfg = RouteConfig {
            template: String::new(),
            overrides: vec![RouteOverride {
                aggregate_type: "Order".into(),
                destination: "orders".into(),
            }],
        };
        let mut r = Router::new(&cfg, kafka_like()).unwrap();
        assert!(r
            .route("Invoice")
            .unwrap_err()
            .contains("no route for aggregate type \"Invoice\""));
    }

    #[test]
    fn unknown_placeholders_are_rejected() {
        let cfg = RouteConfig {
            template: "x.{table}".into(),
            overrides: vec![],
        };
        assert!(Router::new(&cfg, kafka_like()).is_err());
    }
}
