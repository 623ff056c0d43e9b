//! Test harness: runs `saga up` as a child process under a unique prefix (its own three
//! databases, topics and queues on the shared servers) and removes everything afterwards.

#![allow(dead_code)] // each test binary uses part of the harness

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The relay binary built from the workspace (`cargo build -p outbox-relay`).
pub fn relay_bin() -> PathBuf {
    if let Ok(p) = std::env::var("OUTBOX_RELAY_BIN") {
        return p.into();
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_saga")).with_file_name("outbox-relay");
    assert!(
        bin.exists(),
        "{} does not exist: build it first (cargo build -p outbox-relay) or set OUTBOX_RELAY_BIN",
        bin.display()
    );
    bin
}

fn ports_free(base: u16) -> bool {
    [0u16, 1, 2, 3, 11, 12, 13]
        .iter()
        .all(|o| TcpListener::bind(("127.0.0.1", base + o)).is_ok())
}

/// A base port with the console (base), services (base+1..3) and relays (base+11..13) free.
fn free_base() -> u16 {
    let seed = (std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64) as u16;
    for k in 0..500u16 {
        let base = 21000 + ((seed.wrapping_add(k * 37)) % 1500) * 20;
        if ports_free(base) {
            return base;
        }
    }
    panic!("no free port range");
}

pub struct Stack {
    child: Option<Child>,
    pub prefix: String,
    pub base: u16,
    pub console: String,
    pub orders: String,
    pub state_dir: PathBuf,
    pub http: reqwest::Client,
}

impl Stack {
    /// Starts `saga up` for a new prefix `t<tag>_<unique>`.
    pub fn start(tag: &str, extra: &[&str]) -> Stack {
        let unique = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros()
                & 0xff_ffff_ffff
        );
        let prefix = format!("t{tag}_{unique}");
        let base = free_base();
        let state_dir = std::env::temp_dir().join(format!("saga-test-{prefix}"));
        std::fs::create_dir_all(&state_dir).unwrap();
        let log = std::fs::File::create(state_dir.join("up.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_saga"))
            .arg("up")
            .args(["--prefix", &prefix])
            .args(["--listen", &format!("127.0.0.1:{base}")])
            .args(["--base-port", &base.to_string()])
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--relay-bin")
            .arg(relay_bin())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start saga up");
        Stack {
            child: Some(child),
            prefix,
            base,
            console: format!("http://127.0.0.1:{base}"),
            orders: format!("http://127.0.0.1:{}", base + 1),
            state_dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.state_dir.join(name)).unwrap_or_default()
    }

    /// Waits until the console answers (everything provisioned, relays ready).
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(r) = self
                .http
                .get(format!("{}/api/audit", self.console))
                .send()
                .await
            {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("saga up exited ({status}):\n{}", self.log("up.log"));
            }
            assert!(
                Instant::now() < deadline,
                "saga up not ready in 180 s:\n{}",
                self.log("up.log")
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.console))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.console))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Polls the books until they are settled; panics with the last verdict otherwise.
    pub async fn wait_settled(&self, expected_orders: i64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Ok(r) = self
                .http
                .get(format!("{}/api/audit", self.console))
                .send()
                .await
            {
                if let Ok(v) = r.json::<Value>().await {
                    if v["settled"] == true && v["orders"] == expected_orders {
                        return v;
                    }
                    last = v;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        panic!(
            "not settled within {timeout:?}: {last}\nrelay logs:\n{}\n{}\n{}",
            tail(&self.log("relay-orders.log")),
            tail(&self.log("relay-payments.log")),
            tail(&self.log("relay-inventory.log"))
        );
    }

    /// The service's own database (for checks across services' state).
    pub async fn db(&self, service: &str) -> tokio_postgres::Client {
        let url = format!(
            "host=127.0.0.1 port={} user=outbox password=outbox dbname={}_{service}",
            std::env::var("OUTBOX_RELAY_PG_PORT").unwrap_or_else(|_| "54329".into()),
            self.prefix
        );
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: SIGTERM to the child this harness started.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // The relays are gone with `saga up`: drop slots, databases, topics and queues.
        let _ = Command::new(env!("CARGO_BIN_EXE_saga"))
            .args(["teardown", "--prefix", &self.prefix])
            .status();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }
}
