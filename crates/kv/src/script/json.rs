//! `cjson`, the JSON library Redis gives scripts (lua-cjson's behaviour: `%.14g` numbers, `/` escaped,
//! an empty table encodes as `{}`, `cjson.null` for JSON null, configurable depth limits).

use std::sync::Arc;

use mlua::{LightUserData, Lua, Table, Value};
use parking_lot::Mutex;

use super::convert::format_g;

/// The encoder's and decoder's settings (`cjson.encode_max_depth(...)` and friends).
#[derive(Debug, Clone, Copy)]
struct Config {
    encode_max_depth: usize,
    decode_max_depth: usize,
    encode_invalid_numbers: bool,
    decode_invalid_numbers: bool,
    encode_number_precision: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            encode_invalid_numbers: false,
            decode_invalid_numbers: true,
            encode_number_precision: 14,
        }
    }
}

/// A Lua number argument (integral numbers arrive as `Integer`).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        _ => None,
    }
}

fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

fn err<T>(msg: impl Into<String>) -> mlua::Result<T> {
    Err(mlua::Error::RuntimeError(msg.into()))
}

/// The `cjson` table.
pub fn library(lua: &Lua) -> mlua::Result<Table> {
    let config = Arc::new(Mutex::new(Config::default()));
    let t = lua.create_table()?;
    let c = config.clone();
    t.raw_set(
        "encode",
        lua.create_function(move |lua, v: Value| {
            let cfg = *c.lock();
            let mut out = Vec::new();
            encode(&v, &cfg, 1, &mut out)?;
            lua.create_string(&out)
        })?,
    )?;
    let c = config.clone();
    t.raw_set(
        "decode",
        lua.create_function(move |lua, s: mlua::LuaString| {
            let cfg = *c.lock();
            let bytes = s.as_bytes();
            let mut p = Parser {
                s: &bytes,
                pos: 0,
                cfg,
                lua,
            };
            p.skip_ws();
            let v = p.value(1)?;
            p.skip_ws();
            if p.pos < p.s.len() {
                return p.fail("the end");
            }
            Ok(v)
        })?,
    )?;
    t.raw_set("null", null())?;
    let setting = |f: fn(&mut Config, Option<Value>) -> mlua::Result<Value>| {
        let c = config.clone();
        lua.create_function(move |_, v: Option<Value>| f(&mut c.lock(), v))
    };
    t.raw_set(
        "encode_max_depth",
        setting(|c, v| {
            if let Some(d) = v.as_ref().and_then(number).map(|n| n as usize) {
                c.encode_max_depth = d.max(1);
            }
            Ok(Value::Number(c.encode_max_depth as f64))
        })?,
    )?;
    t.raw_set(
        "decode_max_depth",
        setting(|c, v| {
            if let Some(d) = v.as_ref().and_then(number).map(|n| n as usize) {
                c.decode_max_depth = d.max(1);
            }
            Ok(Value::Number(c.decode_max_depth as f64))
        })?,
    )?;
    t.raw_set(
        "encode_invalid_numbers",
        setting(|c, v| {
            if let Some(Value::Boolean(b)) = v {
                c.encode_invalid_numbers = b;
            }
            Ok(Value::Boolean(c.encode_invalid_numbers))
        })?,
    )?;
    t.raw_set(
        "decode_invalid_numbers",
        setting(|c, v| {
            if let Some(Value::Boolean(b)) = v {
                c.decode_invalid_numbers = b;
            }
            Ok(Value::Boolean(c.decode_invalid_numbers))
        })?,
    )?;
    t.raw_set(
        "encode_number_precision",
        setting(|c, v| {
            if let Some(d) = v.as_ref().and_then(number).map(|n| n as usize) {
                c.encode_number_precision = d.clamp(1, 14);
            }
            Ok(Value::Number(c.encode_number_precision as f64))
        })?,
    )?;
    t.raw_set(
        "encode_keep_buffer",
        setting(|_, _| Ok(Value::Boolean(true)))?,
    )?;
    t.raw_set(
        "encode_sparse_array",
        setting(|_, _| Ok(Value::Boolean(false)))?,
    )?;
    t.raw_set("_NAME", "cjson")?;
    t.raw_set("_VERSION", "2.1.0")?;
    Ok(t)
}

fn encode(v: &Value, cfg: &Config, depth: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Number(n) => {
            if !n.is_finite() && !cfg.encode_invalid_numbers {
                return err("Cannot serialise number: must not be NaN or Inf");
            }
            out.extend_from_slice(format_g(*n, cfg.encode_number_precision).as_bytes());
        }
        Value::String(s) => encode_string(&s.as_bytes(), out),
        Value::Table(t) => {
            if depth > cfg.encode_max_depth {
                return err(format!("Cannot serialise, excessive nesting ({depth})"));
            }
            encode_table(t, cfg, depth, out)?;
        }
        other => {
            return err(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            ));
        }
    }
    Ok(())
}

fn encode_table(t: &Table, cfg: &Config, depth: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    // Keys only in the first pass: holding every entry would exhaust Lua's reference slots.
    let mut count = 0usize;
    let mut max = 0usize;
    let mut is_array = true;
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        count += 1;
        let n = match k {
            Value::Integer(i) => i as f64,
            Value::Number(n) => n,
            _ => {
                is_array = false;
                continue;
            }
        };
        if n < 1.0 || n.fract() != 0.0 {
            is_array = false;
        }
        max = max.max(n as usize);
    }
    let is_array = is_array && count > 0;
    if is_array && max > count * 2 && max > 10 {
        return err("Cannot serialise table: excessive sparse array");
    }
    if is_array {
        out.push(b'[');
        for i in 1..=max {
            if i > 1 {
                out.push(b',');
            }
            let v: Value = t.raw_get(i)?;
            encode(&v, cfg, depth + 1, out)?;
        }
        out.push(b']');
        return Ok(());
    }
    out.push(b'{');
    for (n, pair) in t.pairs::<Value, Value>().enumerate() {
        let (k, v) = pair?;
        if n > 0 {
            out.push(b',');
        }
        match &k {
            Value::String(s) => encode_string(&s.as_bytes(), out),
            Value::Integer(i) => encode_string(i.to_string().as_bytes(), out),
            Value::Number(x) => {
                encode_string(format_g(*x, cfg.encode_number_precision).as_bytes(), out)
            }
            _ => return err("Cannot serialise table: table key must be a number or string"),
        }
        out.push(b':');
        encode(&v, cfg, depth + 1, out)?;
    }
    out.push(b'}');
    Ok(())
}

fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b if b < 0x20 || b == 0x7f => {
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
            }
            b => out.push(b),
        }
    }
    out.push(b'"');
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    cfg: Config,
    lua: &'a Lua,
}

impl Parser<'_> {
    fn fail<T>(&self, expected: &str) -> mlua::Result<T> {
        let found = if self.pos >= self.s.len() {
            "end of input".to_owned()
        } else {
            "invalid token".to_owned()
        };
        err(format!(
            "Expected {expected} but found {found} at character {}",
            self.pos + 1
        ))
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && matches!(self.s[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> mlua::Result<Value> {
        self.skip_ws();
        let Some(&c) = self.s.get(self.pos) else {
            return self.fail("value");
        };
        match c {
            b'{' | b'[' => {
                if depth > self.cfg.decode_max_depth {
                    return err(format!(
                        "Found too many nested data structures ({depth}) at character {}",
                        self.pos + 1
                    ));
                }
                if c == b'{' {
                    self.object(depth)
                } else {
                    self.array(depth)
                }
            }
            b'"' => {
                let s = self.string()?;
                Ok(Value::String(self.lua.create_string(&s)?))
            }
            b't' if self.s[self.pos..].starts_with(b"true") => {
                self.pos += 4;
                Ok(Value::Boolean(true))
            }
            b'f' if self.s[self.pos..].starts_with(b"false") => {
                self.pos += 5;
                Ok(Value::Boolean(false))
            }
            b'n' if self.s[self.pos..].starts_with(b"null") => {
                self.pos += 4;
                Ok(null())
            }
            b'-' | b'0'..=b'9' | b'I' | b'N' | b'i' | b'n' => self.number(),
            _ => self.fail("value"),
        }
    }

    fn number(&mut self) -> mlua::Result<Value> {
        let start = self.pos;
        while self.pos < self.s.len()
            && matches!(self.s[self.pos], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9' | b'x' | b'X' | b'a'..=b'd' | b'f' | b'A'..=b'D' | b'F' | b'i' | b'n' | b'I' | b'N' | b't' | b'y')
        {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
        let lower = text.to_ascii_lowercase();
        let n = match lower.as_str() {
            "inf" | "infinity" if self.cfg.decode_invalid_numbers => f64::INFINITY,
            "-inf" | "-infinity" if self.cfg.decode_invalid_numbers => f64::NEG_INFINITY,
            "nan" | "-nan" if self.cfg.decode_invalid_numbers => f64::NAN,
            _ => match text.parse::<f64>() {
                Ok(n) => n,
                Err(_) => {
                    self.pos = start;
                    return self.fail("value");
                }
            },
        };
        Ok(Value::Number(n))
    }

    fn string(&mut self) -> mlua::Result<Vec<u8>> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.pos) else {
                return err(format!(
                    "Expected object key string but found unexpected end of string at character {}",
                    self.pos + 1
                ));
            };
            self.pos += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else {
                        return self.fail("escape");
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp)
                                && self.s.get(self.pos..self.pos + 2) == Some(b"\\u")
                            {
                                self.pos += 2;
                                let low = self.hex4()?;
                                cp = 0x10000
                                    + ((cp - 0xD800) << 10)
                                    + (low.wrapping_sub(0xDC00) & 0x3ff);
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return self.fail("escape"),
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> mlua::Result<u32> {
        let Some(h) = self.s.get(self.pos..self.pos + 4) else {
            return self.fail("unicode escape");
        };
        let v = std::str::from_utf8(h)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok());
        match v {
            Some(v) => {
                self.pos += 4;
                Ok(v)
            }
            None => self.fail("unicode escape"),
        }
    }

    fn object(&mut self, depth: usize) -> mlua::Result<Value> {
        self.pos += 1;
        let t = self.lua.create_table()?;
        self.skip_ws();
        if self.s.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Value::Table(t));
        }
        loop {
            self.skip_ws();
            if self.s.get(self.pos) != Some(&b'"') {
                return self.fail("object key string");
            }
            let key = self.string()?;
            self.skip_ws();
            if self.s.get(self.pos) != Some(&b':') {
                return self.fail("colon");
            }
            self.pos += 1;
            let v = self.value(depth + 1)?;
            t.raw_set(self.lua.create_string(&key)?, v)?;
            self.skip_ws();
            match self.s.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Table(t));
                }
                _ => return self.fail("comma or object end"),
            }
        }
    }

    fn array(&mut self, depth: usize) -> mlua::Result<Value> {
        self.pos += 1;
        let t = self.lua.create_table()?;
        self.skip_ws();
        if self.s.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(Value::Table(t));
        }
        let mut i = 1;
        loop {
            let v = self.value(depth + 1)?;
            t.raw_set(i, v)?;
            i += 1;
            self.skip_ws();
            match self.s.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Table(t));
                }
                _ => return self.fail("comma or array end"),
            }
        }
    }
}
