//! `strata user ...` and `strata vhost ...`: rabbitmqctl-like administration of a running node through its
//! management API (`/api/users`, `/api/permissions`, `/api/vhosts`).
//!
//! The request goes over plain HTTP/1.1 to the admin port with HTTP Basic credentials; a tiny client is
//! enough for one request per run, so the binary needs no HTTP client library.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where the node's management API is and who calls it.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The node's admin HTTP address
    #[arg(
        long,
        value_name = "URL",
        env = "STRATA_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub api: String,
    /// User to authenticate as (needs the administrator tag)
    #[arg(
        long,
        value_name = "NAME",
        env = "STRATA_API_USER",
        default_value = "guest"
    )]
    pub api_user: String,
    /// Password of that user (prefer the environment variable: flags are visible in the process list)
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "STRATA_API_PASSWORD",
        default_value = "guest",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub api_password: String,
}

/// `strata user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users and their tags.
    List(ApiArgs),
    /// Create a user (or replace its password and tags).
    Add {
        /// User name.
        name: String,
        /// Password.
        password: String,
        /// Comma-separated tags (administrator, monitoring, management, policymaker).
        #[arg(long, default_value = "")]
        tags: String,
        /// The management API to call.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete a user and its permissions.
    Delete {
        /// User name.
        name: String,
        /// The management API to call.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Replace a user's tags, keeping the password.
    SetTags {
        /// User name.
        name: String,
        /// Tags.
        tags: Vec<String>,
        /// The management API to call.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Grant a user RabbitMQ's configure/write/read patterns on a virtual host.
    SetPermissions {
        /// User name.
        name: String,
        /// Pattern of resources the user may configure (declare, delete).
        configure: String,
        /// Pattern of resources the user may write to (publish, bind to).
        write: String,
        /// Pattern of resources the user may read from (consume, get, purge).
        read: String,
        /// Virtual host.
        #[arg(long, short = 'p', default_value = "/")]
        vhost: String,
        /// The management API to call.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove a user's grant on a virtual host.
    ClearPermissions {
        /// User name.
        name: String,
        /// Virtual host.
        #[arg(long, short = 'p', default_value = "/")]
        vhost: String,
        /// The management API to call.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List every grant.
    ListPermissions(ApiArgs),
}

/// `strata vhost ...`
#[derive(Debug, Subcommand)]
pub enum VHostCommand {
    /// List virtual hosts.
    List(ApiArgs),
    /// Create a virtual host.
    Add {
        /// Name.
        name: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
        /// The management API to call.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete a virtual host with everything in it (its connections are closed).
    Delete {
        /// Name.
        name: String,
        /// The management API to call.
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Percent-encodes a path segment.
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP/1.1 request; returns the status and the body.
fn request(
    api: &ApiArgs,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String), String> {
    let rest = api
        .api
        .strip_prefix("http://")
        .ok_or_else(|| format!("--api must be an http:// URL, got {}", api.api))?;
    let host = rest.split('/').next().unwrap_or(rest);
    let mut stream =
        TcpStream::connect(host).map_err(|e| format!("cannot connect to {host}: {e}"))?;
    let timeout = Some(Duration::from_secs(30));
    stream
        .set_read_timeout(timeout)
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(timeout)
        .map_err(|e| e.to_string())?;
    let credentials = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", api.api_user, api.api_password));
    let payload = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {credentials}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(payload.as_bytes()))
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot read the response: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("malformed HTTP status line")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body).ok_or("malformed chunked body")?;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// Runs a request and reports its outcome; `print` formats a successful JSON answer.
fn run(
    api: &ApiArgs,
    method: &str,
    path: &str,
    body: Option<Value>,
    print: impl Fn(&Value),
) -> ExitCode {
    match request(api, method, path, body.as_ref()) {
        Ok((status, text)) if (200..300).contains(&status) => {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                print(&v);
            }
            ExitCode::SUCCESS
        }
        Ok((status, text)) => {
            let reason = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_owned))
                .unwrap_or(text);
            eprintln!("strata: error: {method} {path}: HTTP {status}: {reason}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("strata: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tags_text(v: &Value) -> String {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

/// Runs `strata user ...`.
pub fn run_user(cmd: UserCommand) -> ExitCode {
    match cmd {
        UserCommand::List(api) => run(&api, "GET", "/api/users", None, |v| {
            println!("user\ttags");
            for u in v.as_array().into_iter().flatten() {
                println!(
                    "{}\t[{}]",
                    u["name"].as_str().unwrap_or_default(),
                    tags_text(&u["tags"])
                );
            }
        }),
        UserCommand::Add {
            name,
            password,
            tags,
            api,
        } => run(
            &api,
            "PUT",
            &format!("/api/users/{}", seg(&name)),
            Some(json!({"password": password, "tags": tags})),
            |_| {},
        ),
        UserCommand::Delete { name, api } => run(
            &api,
            "DELETE",
            &format!("/api/users/{}", seg(&name)),
            None,
            |_| {},
        ),
        UserCommand::SetTags { name, tags, api } => {
            let user = match request(&api, "GET", &format!("/api/users/{}", seg(&name)), None) {
                Ok((200, _)) => name,
                Ok((status, _)) => {
                    eprintln!("strata: error: user {name}: HTTP {status}");
                    return ExitCode::FAILURE;
                }
                Err(e) => {
                    eprintln!("strata: error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // Without a password field an existing user keeps its password.
            run(
                &api,
                "PUT",
                &format!("/api/users/{}", seg(&user)),
                Some(json!({"tags": tags})),
                |_| {},
            )
        }
        UserCommand::SetPermissions {
            name,
            configure,
            write,
            read,
            vhost,
            api,
        } => run(
            &api,
            "PUT",
            &format!("/api/permissions/{}/{}", seg(&vhost), seg(&name)),
            Some(json!({"configure": configure, "write": write, "read": read})),
            |_| {},
        ),
        UserCommand::ClearPermissions { name, vhost, api } => run(
            &api,
            "DELETE",
            &format!("/api/permissions/{}/{}", seg(&vhost), seg(&name)),
            None,
            |_| {},
        ),
        UserCommand::ListPermissions(api) => run(&api, "GET", "/api/permissions", None, |v| {
            println!("vhost\tuser\tconfigure\twrite\tread");
            for p in v.as_array().into_iter().flatten() {
                let f = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    f("vhost"),
                    f("user"),
                    f("configure"),
                    f("write"),
                    f("read")
                );
            }
        }),
    }
}

/// Runs `strata vhost ...`.
pub fn run_vhost(cmd: VHostCommand) -> ExitCode {
    match cmd {
        VHostCommand::List(api) => run(&api, "GET", "/api/vhosts", None, |v| {
            println!("name\tdescription");
            for h in v.as_array().into_iter().flatten() {
                println!(
                    "{}\t{}",
                    h["name"].as_str().unwrap_or_default(),
                    h["description"].as_str().unwrap_or_default()
                );
            }
        }),
        VHostCommand::Add {
            name,
            description,
            api,
        } => run(
            &api,
            "PUT",
            &format!("/api/vhosts/{}", seg(&name)),
            Some(json!({"description": description})),
            |_| {},
        ),
        VHostCommand::Delete { name, api } => run(
            &api,
            "DELETE",
            &format!("/api/vhosts/{}", seg(&name)),
            None,
            |_| {},
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_and_segments() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n").as_deref(),
            Some(&b"abcde"[..])
        );
        assert!(dechunk(b"zz\r\n").is_none());
        assert_eq!(seg("/"), "%2F");
        assert_eq!(seg("a b.c"), "a%20b.c");
    }
}
