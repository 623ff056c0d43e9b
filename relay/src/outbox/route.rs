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
    /// `outbox.route.regex` / `replacement`: replaces the template when set.
    regex: Option<RouteRegex>,
    overrides: HashMap<String, Arc<str>>,
    cache: HashMap<String, Result<Arc<str>, String>>,
    /// The last aggregate type routed and its destination: runs of one type are the
    /// common case, and comparing a short string is cheaper than hashing it.
    last: Option<(String, Arc<str>)>,
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
        let regex = RouteRegex::from_config(config)?;
        let mut overrides = HashMap::new();
        for (i, o) in config.overrides.iter().enumerate() {
            check(&o.destination)
                .map_err(|e| format!("outbox.route.overrides[{i}].destination: {e}"))?;
            overrides.insert(o.aggregate_type.clone(), Arc::from(o.destination.as_str()));
        }
        Ok(Router {
            template: config.template.clone(),
            regex,
            overrides,
            cache: HashMap::new(),
            last: None,
            check,
        })
    }

    /// The destination for `aggregate_type`, or why there is none.
    pub fn route(&mut self, aggregate_type: &str) -> Result<Arc<str>, String> {
        if let Some((t, d)) = &self.last {
            if t == aggregate_type {
                return Ok(d.clone());
            }
        }
        let resolved = match self.cache.get(aggregate_type) {
            Some(hit) => hit.clone(),
            None => self.resolve_and_cache(aggregate_type),
        };
        if let Ok(d) = &resolved {
            // The buffer is reused: alternating types do not allocate per event.
            let (t, last) = self.last.get_or_insert_with(|| (String::new(), d.clone()));
            t.clear();
            t.push_str(aggregate_type);
            *last = d.clone();
        }
        resolved
    }

    fn resolve_and_cache(&mut self, aggregate_type: &str) -> Result<Arc<str>, String> {
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
        if let Some(regex) = &self.regex {
            let destination = regex.apply(aggregate_type);
            (self.check)(&destination).map_err(|e| {
                format!("no valid route for aggregate type {aggregate_type:?}: {e}")
            })?;
            return Ok(Arc::from(destination));
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

/// Debezium's `route.topic.regex` + `route.topic.replacement`, as Kafka Connect's
/// RegexRouter applies them: the regex must match the whole value (`Matcher.matches`),
/// and the replacement uses `java.util.regex` syntax, so a Debezium configuration can be
/// copied as it is.
#[derive(Debug, Clone)]
pub struct RouteRegex {
    regex: regex_lite::Regex,
    replacement: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Group(usize),
    Named(String),
}

impl RouteRegex {
    /// `None` when `outbox.route.regex` is not set; an error naming the key otherwise.
    pub fn from_config(config: &RouteConfig) -> Result<Option<RouteRegex>, String> {
        let Some(pattern) = &config.regex else {
            if config.replacement.is_some() {
                return Err("outbox.route.replacement: needs outbox.route.regex".into());
            }
            return Ok(None);
        };
        let Some(replacement) = &config.replacement else {
            return Err(
                "outbox.route.regex: needs outbox.route.replacement (Debezium's route.topic.replacement, e.g. \"outbox.event.${routedByValue}\")".into(),
            );
        };
        if config.template != default_template_text() && !config.template.is_empty() {
            return Err(format!(
                "outbox.route.template: {:?} and outbox.route.regex both name destinations; set one (an empty template with regex)",
                config.template
            ));
        }
        // Anchored: Java's Matcher.matches() needs the whole value to match.
        let regex = regex_lite::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
            format!("outbox.route.regex: {pattern:?} is not a valid regular expression: {e}")
        })?;
        let replacement = parse_replacement(&regex, replacement)
            .map_err(|e| format!("outbox.route.replacement: {replacement:?}: {e}"))?;
        Ok(Some(RouteRegex { regex, replacement }))
    }

    /// The destination for `value`: the replacement when the regex matches all of it,
    /// otherwise `value` itself (RegexRouter leaves a record it does not match alone).
    pub fn apply(&self, value: &str) -> String {
        let Some(caps) = self.regex.captures(value) else {
            return value.to_string();
        };
        let mut out = String::new();
        for part in &self.replacement {
            match part {
                Part::Literal(text) => out.push_str(text),
                // A group that did not take part in the match is empty (Java: "").
                Part::Group(i) => out.push_str(caps.get(*i).map_or("", |m| m.as_str())),
                Part::Named(n) => out.push_str(caps.name(n).map_or("", |m| m.as_str())),
            }
        }
        out
    }
}

fn default_template_text() -> &'static str {
    "outbox.event.{aggregatetype}"
}

/// Parses a replacement as `Matcher.appendReplacement` does: `\x` is a literal `x`,
/// `${name}` a named group, `$` and digits a numbered group (taking further digits while
/// the number stays a group of the pattern, as Java does).
fn parse_replacement(regex: &regex_lite::Regex, text: &str) -> Result<Vec<Part>, String> {
    // captures_len counts the whole match as group 0.
    let groups = regex.captures_len() - 1;
    let names: Vec<&str> = regex.capture_names().flatten().collect();
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => literal.push(escaped),
                None => return Err("ends with a lone backslash".into()),
            },
            '$' => {
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                match chars.next() {
                    Some('{') => {
                        let mut name = String::new();
                        loop {
                            match chars.next() {
                                Some('}') => break,
                                Some(ch) if ch.is_ascii_alphanumeric() => name.push(ch),
                                _ => return Err("a ${ has no valid group name and closing }".into()),
                            }
                        }
                        if !names.contains(&name.as_str()) {
                            return Err(format!(
                                "names group {name:?}, which the regex does not have (it has {names:?})"
                            ));
                        }
                        parts.push(Part::Named(name));
                    }
                    Some(d) if d.is_ascii_digit() => {
                        let mut n = d.to_digit(10).unwrap_or(0) as usize;
                        if n > groups {
                            return Err(format!(
                                "refers to group {n}, but the regex has {groups} group(s)"
                            ));
                        }
                        while let Some(next) = chars.peek().and_then(|c| c.to_digit(10)) {
                            let longer = n * 10 + next as usize;
                            if longer > groups {
                                break;
                            }
                            n = longer;
                            chars.next();
                        }
                        parts.push(Part::Group(n));
                    }
                    _ => {
                        return Err(
                            "a $ is not followed by a group number or {name}; write \\$ for a literal $".into(),
                        )
                    }
                }
            }
            other => literal.push(other),
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    Ok(parts)
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
    fn alternating_aggregate_types_each_get_their_own_destination() {
        let mut r = Router::new(
            &RouteConfig {
                template: "t.{aggregatetype}".into(),
                ..Default::default()
            },
            Arc::new(|_| Ok(())),
        )
        .unwrap();
        let got: Vec<String> = ["Order", "Order", "Invoice", "Order", "Invoice", "Invoice"]
            .iter()
            .map(|t| r.route(t).unwrap().to_string())
            .collect();
        assert_eq!(
            got,
            [
                "t.Order",
                "t.Order",
                "t.Invoice",
                "t.Order",
                "t.Invoice",
                "t.Invoice"
            ]
        );
    }

    #[test]
    fn overrides_win_then_template() {
        let cfg = RouteConfig {
            template: "outbox.event.{aggregatetype}".into(),
            overrides: vec![RouteOverride {
                aggregate_type: "Order".into(),
                destination: "orders".into(),
            }],
            ..RouteConfig::default()
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
            ..RouteConfig::default()
        };
        let mut r = Router::new(&cfg, kafka_like()).unwrap();
        assert!(r
            .route("Invoice")
            .unwrap_err()
            .contains("no route for aggregate type \"Invoice\""));
    }

    fn regex_config(regex: &str, replacement: &str) -> RouteConfig {
        RouteConfig {
            template: String::new(),
            overrides: vec![],
            regex: Some(regex.into()),
            replacement: Some(replacement.into()),
        }
    }

    #[test]
    fn debezium_regex_routes_copy_over_unchanged() {
        // Debezium's defaults spelled out: the same topics as the default template.
        let cfg = regex_config("(?<routedByValue>.*)", "outbox.event.${routedByValue}");
        let mut r = Router::new(&cfg, kafka_like()).unwrap();
        assert_eq!(&*r.route("Order").unwrap(), "outbox.event.Order");
        // Numbered groups, the whole value must match, and an unmatched value is its own
        // topic (RegexRouter leaves the record alone).
        let cfg = regex_config("(.*)_(v[0-9]+)", "events.$1.$2");
        let mut r = Router::new(&cfg, kafka_like()).unwrap();
        assert_eq!(&*r.route("order_v2").unwrap(), "events.order.v2");
        assert_eq!(&*r.route("customer").unwrap(), "customer");
        let cfg = regex_config("order", "orders");
        let mut r = Router::new(&cfg, kafka_like()).unwrap();
        assert_eq!(&*r.route("order").unwrap(), "orders");
        assert_eq!(&*r.route("orders-x").unwrap(), "orders-x");
        // Java's digit rule: $10 is group 1 then "0" when there are fewer than 10 groups;
        // \$ is a literal dollar (which a topic cannot hold, so the route fails).
        let cfg = regex_config("(a)(b)", "x$10-$2");
        let mut r = Router::new(&cfg, kafka_like()).unwrap();
        assert_eq!(&*r.route("ab").unwrap(), "xa0-b");
        let cfg = regex_config("(a)", "x\\$1");
        let mut r = Router::new(&cfg, kafka_like()).unwrap();
        assert!(r.route("a").unwrap_err().contains("x$1"));
        // Overrides still win.
        let mut cfg = regex_config("(.*)", "t.$1");
        cfg.overrides = vec![RouteOverride {
            aggregate_type: "Order".into(),
            destination: "orders".into(),
        }];
        let mut r = Router::new(&cfg, kafka_like()).unwrap();
        assert_eq!(&*r.route("Order").unwrap(), "orders");
        assert_eq!(&*r.route("Invoice").unwrap(), "t.Invoice");
    }

    #[test]
    fn bad_regex_routes_are_refused_naming_the_key() {
        let e = RouteRegex::from_config(&regex_config("(unclosed", "x")).unwrap_err();
        assert!(e.starts_with("outbox.route.regex:"), "{e}");
        for (replacement, why) in [
            ("t.$2", "group 2"),
            ("t.${nope}", "\"nope\""),
            ("t.$", "$ is not followed"),
            ("t.\\", "lone backslash"),
        ] {
            let e = RouteRegex::from_config(&regex_config("(x)", replacement)).unwrap_err();
            assert!(
                e.starts_with("outbox.route.replacement:") && e.contains(why),
                "{replacement}: {e}"
            );
        }
        let mut cfg = regex_config("(x)", "t.$1");
        cfg.replacement = None;
        assert!(RouteRegex::from_config(&cfg)
            .unwrap_err()
            .starts_with("outbox.route.regex: needs outbox.route.replacement"));
        cfg.template = "other.{aggregatetype}".into();
        cfg.replacement = Some("t.$1".into());
        assert!(RouteRegex::from_config(&cfg)
            .unwrap_err()
            .starts_with("outbox.route.template:"));
        // The default template may stay (it is what an untouched file has).
        cfg.template = default_template_text().into();
        assert!(RouteRegex::from_config(&cfg).unwrap().is_some());
    }

    #[test]
    fn unknown_placeholders_are_rejected() {
        let cfg = RouteConfig {
            template: "x.{table}".into(),
            overrides: vec![],
            ..RouteConfig::default()
        };
        assert!(Router::new(&cfg, kafka_like()).is_err());
    }
}
