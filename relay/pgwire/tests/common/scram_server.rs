//! The server side of SCRAM-SHA-256 (RFC 5802/7677) for the scripted fake
//! server: enough to complete an exchange, check the client's channel
//! binding, and sign (or mis-sign) the final message.
#![allow(dead_code)] // each test binary uses a different subset

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

const SALT: &[u8] = b"fake-server-salt";
const ITERATIONS: u32 = 4096;
const SERVER_NONCE: &str = "c2VydmVyLW5vbmNl";

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// PBKDF2-HMAC-SHA-256 with one output block: SCRAM's Hi().
fn salted_password(password: &str) -> Vec<u8> {
    let mut salt = SALT.to_vec();
    salt.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password.as_bytes(), &salt);
    let mut out = u.clone();
    for _ in 1..ITERATIONS {
        u = hmac(password.as_bytes(), &u);
        out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
    }
    out
}

/// One exchange, fed the client's messages in order.
pub struct ScramServer {
    password: String,
    client_first_bare: String,
    server_first: String,
    /// The GS2 header the client sent, which its final message must repeat
    /// together with the binding data.
    gs2_header: String,
}

impl ScramServer {
    /// Takes the SASLInitialResponse body (mechanism, length, client-first)
    /// and returns the mechanism and the server-first message.
    pub fn start(password: &str, initial_response: &[u8]) -> (Self, String, String) {
        let nul = initial_response.iter().position(|&b| b == 0).unwrap();
        let mechanism = String::from_utf8(initial_response[..nul].to_vec()).unwrap();
        let len = i32::from_be_bytes(initial_response[nul + 1..nul + 5].try_into().unwrap());
        let first = std::str::from_utf8(&initial_response[nul + 5..]).unwrap();
        assert_eq!(len as usize, first.len());
        // gs2-header is "<flag>,," (no authzid); the bare message follows.
        let split = first.find(",,").unwrap() + 2;
        let (gs2_header, bare) = first.split_at(split);
        let client_nonce = bare.split(',').find_map(|a| a.strip_prefix("r=")).unwrap();
        let server_first = format!(
            "r={client_nonce}{SERVER_NONCE},s={},i={ITERATIONS}",
            STANDARD.encode(SALT)
        );
        (
            ScramServer {
                password: password.to_owned(),
                client_first_bare: bare.to_owned(),
                server_first: server_first.clone(),
                gs2_header: gs2_header.to_owned(),
            },
            mechanism,
            server_first,
        )
    }

    pub fn gs2_header(&self) -> &str {
        &self.gs2_header
    }

    /// Checks the client-final message (binding data and proof) and returns
    /// the server-final message `v=<signature>`.
    pub fn finish(&self, client_final: &[u8], binding_data: &[u8]) -> String {
        let client_final = std::str::from_utf8(client_final).unwrap();
        let (without_proof, proof) = client_final.rsplit_once(",p=").unwrap();
        let mut cbind = self.gs2_header.as_bytes().to_vec();
        cbind.extend_from_slice(binding_data);
        assert!(
            without_proof.starts_with(&format!("c={},", STANDARD.encode(&cbind))),
            "channel binding: {without_proof}"
        );
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let salted = salted_password(&self.password);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let recovered: Vec<u8> = STANDARD
            .decode(proof)
            .unwrap()
            .iter()
            .zip(&signature)
            .map(|(p, s)| p ^ s)
            .collect();
        assert_eq!(
            Sha256::digest(&recovered).to_vec(),
            stored_key.to_vec(),
            "client proof"
        );
        let server_key = hmac(&salted, b"Server Key");
        format!(
            "v={}",
            STANDARD.encode(hmac(&server_key, auth_message.as_bytes()))
        )
    }
}
