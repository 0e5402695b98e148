//! Table-driven command tests: run a command, render its reply compactly, compare.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use redis::Value;

/// Runs `args` and renders the reply compactly: `:1`, `$abc`, `nil`, `[a,b]`, `+OK`, `!ERR ...`.
pub fn run(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query::<Value>(c) {
        Ok(v) => render(&v),
        Err(e) => format!(
            "!{} {}",
            e.code().unwrap_or("?"),
            e.detail().unwrap_or_default()
        ),
    }
}

pub fn render(v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::Int(n) => format!(":{n}"),
        Value::BulkString(b) => format!("${}", String::from_utf8_lossy(b)),
        Value::SimpleString(s) => format!("+{s}"),
        Value::Okay => "+OK".into(),
        Value::Array(items) | Value::Set(items) => {
            format!(
                "[{}]",
                items.iter().map(render).collect::<Vec<_>>().join(",")
            )
        }
        Value::Map(pairs) => format!(
            "{{{}}}",
            pairs
                .iter()
                .map(|(k, v)| format!("{}={}", render(k), render(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Value::Double(d) => format!("{d}"),
        other => format!("{other:?}"),
    }
}

/// Runs each step on one connection and checks its rendered reply.
pub fn table(c: &mut redis::Connection, steps: &[(&[&str], &str)]) {
    for (args, want) in steps {
        assert_eq!(run(c, args), *want, "{args:?}");
    }
}
