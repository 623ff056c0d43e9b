//! A client of Toxiproxy's HTTP API (deploy/local/toxiproxy.sh starts the server): TCP
//! proxies whose connections can be cut, slowed, throttled, closed slowly or left
//! half-open by "toxics", for the chaos suite's network faults.
//!
//! Blocking and dependency-free on purpose (one request per connection, like
//! [`crate::relay::http_get`]): the fault driver runs on a blocking thread.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

/// The API at `127.0.0.1:<port>`.
#[derive(Debug, Clone)]
pub struct Toxiproxy {
    port: u16,
}

/// A direction of a proxied connection, as Toxiproxy names it: `upstream` is from the
/// client (the relay) to the server, `downstream` back.
pub const STREAMS: [&str; 2] = ["upstream", "downstream"];

impl Toxiproxy {
    pub fn new(port: u16) -> Toxiproxy {
        Toxiproxy { port }
    }

    /// Port of the API from `OUTBOX_RELAY_TOXIPROXY_PORT` (toxiproxy.sh's default 18474).
    pub fn from_env() -> Toxiproxy {
        let port = std::env::var("OUTBOX_RELAY_TOXIPROXY_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(18474);
        Toxiproxy::new(port)
    }

    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut s =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(2))
                .map_err(|e| {
                    format!(
                "toxiproxy API on 127.0.0.1:{}: {e} (start it with deploy/local/toxiproxy.sh)",
                self.port
            )
                })?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("toxiproxy: no status in {text:?}"))?;
        let payload = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        if !(200..300).contains(&status) {
            return Err(format!("toxiproxy {method} {path}: {status} {payload}"));
        }
        // Bodies are JSON (or empty for 204); chunked encoding is not used by its API.
        Ok(serde_json::from_str(payload.trim()).unwrap_or(Value::Null))
    }

    /// Creates (or re-creates, dropping its toxics) a proxy listening on
    /// `127.0.0.1:<listen>` that forwards to `upstream`.
    pub fn create_proxy(&self, name: &str, listen: u16, upstream: &str) -> Result<(), String> {
        let _ = self.request("DELETE", &format!("/proxies/{name}"), None);
        self.request(
            "POST",
            "/proxies",
            Some(&json!({
                "name": name,
                "listen": format!("127.0.0.1:{listen}"),
                "upstream": upstream,
                "enabled": true,
            })),
        )
        .map(drop)
    }

    /// A disabled proxy closes every connection and refuses new ones.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), String> {
        self.request(
            "POST",
            &format!("/proxies/{name}"),
            Some(&json!({ "enabled": enabled })),
        )
        .map(drop)
    }

    /// Adds a toxic of `kind` (latency, bandwidth, slow_close, timeout, limit_data, …) on
    /// one direction, for every connection of the proxy, old and new.
    pub fn add_toxic(
        &self,
        proxy: &str,
        name: &str,
        kind: &str,
        stream: &str,
        attributes: Value,
    ) -> Result<(), String> {
        self.request(
            "POST",
            &format!("/proxies/{proxy}/toxics"),
            Some(&json!({
                "name": name,
                "type": kind,
                "stream": stream,
                "toxicity": 1.0,
                "attributes": attributes,
            })),
        )
        .map(drop)
    }

    pub fn remove_toxic(&self, proxy: &str, name: &str) -> Result<(), String> {
        self.request("DELETE", &format!("/proxies/{proxy}/toxics/{name}"), None)
            .map(drop)
    }

    /// Names of the toxics on a proxy.
    pub fn toxics(&self, proxy: &str) -> Result<Vec<String>, String> {
        let v = self.request("GET", &format!("/proxies/{proxy}/toxics"), None)?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Removes every toxic of `proxy` and enables it.
    pub fn heal(&self, proxy: &str) -> Result<(), String> {
        for t in self.toxics(proxy)? {
            self.remove_toxic(proxy, &t)?;
        }
        self.set_enabled(proxy, true)
    }

    pub fn delete_proxy(&self, name: &str) -> Result<(), String> {
        self.request("DELETE", &format!("/proxies/{name}"), None)
            .map(drop)
    }
}
