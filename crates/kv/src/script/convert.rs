//! Redis's type conversions from Lua values to replies, in RESP2 and RESP3, as Redis 7 documents them
//! (the other way, replies to Lua values, is `fastcall::push_frame`).

use mlua::{Table, Value};
use strata_resp::{Frame, ProtocolVersion};

/// Deepest nesting converted; deeper tables become an error (Redis runs out of Lua stack instead).
const MAX_DEPTH: usize = 1000;

/// A double as a RESP2 client receives it (the bulk string strata's encoder writes).
pub(super) fn resp2_double(d: f64) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    Frame::Double(d).encode(ProtocolVersion::Resp2, &mut out);
    // `$<len>\r\n<text>\r\n`
    let start = out.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
    let end = out.len().saturating_sub(2).max(start);
    out[start..end].to_vec()
}

/// A script's return value as the reply to its caller.
///
/// string → bulk; number → integer (truncated); `true` → 1 (RESP3 scripts: boolean); `false` and `nil`
/// → nil (RESP3 scripts: `false` is a boolean); a table with `err` → error, `ok` → status, `double`,
/// `big_number`, `verbatim_string`, `map`, `set` → those RESP3 types; any other table → array of its
/// elements up to the first nil.
pub fn lua_to_frame(value: &Value, resp3: bool, depth: usize) -> Frame {
    if depth > MAX_DEPTH {
        return Frame::error("ERR reached lua stack limit");
    }
    match value {
        Value::String(s) => Frame::Bulk(bytes::Bytes::copy_from_slice(&s.as_bytes())),
        Value::Boolean(b) => {
            if resp3 {
                Frame::Boolean(*b)
            } else if *b {
                Frame::Integer(1)
            } else {
                Frame::Null
            }
        }
        Value::Integer(i) => Frame::Integer(*i),
        Value::Number(n) => Frame::Integer(number_to_i64(*n)),
        Value::Table(t) => table_to_frame(t, resp3, depth),
        _ => Frame::Null,
    }
}

fn table_to_frame(t: &Table, resp3: bool, depth: usize) -> Frame {
    if let Ok(Value::String(e)) = t.raw_get::<Value>("err") {
        return Frame::error(error_text(&e.to_string_lossy()));
    }
    if let Ok(Value::String(s)) = t.raw_get::<Value>("ok") {
        return Frame::Simple(bytes::Bytes::from(
            s.to_string_lossy().replace(['\r', '\n'], " "),
        ));
    }
    match t.raw_get::<Value>("double") {
        Ok(Value::Number(d)) => return Frame::Double(d),
        Ok(Value::Integer(i)) => return Frame::Double(i as f64),
        _ => {}
    }
    if let Ok(Value::String(s)) = t.raw_get::<Value>("big_number") {
        return Frame::BigNumber(bytes::Bytes::from(
            s.to_string_lossy().replace(['\r', '\n'], " "),
        ));
    }
    if let Ok(Value::Table(v)) = t.raw_get::<Value>("verbatim_string")
        && let (Ok(Value::String(format)), Ok(Value::String(text))) =
            (v.raw_get::<Value>("format"), v.raw_get::<Value>("string"))
    {
        let f = format.as_bytes();
        let mut fmt = [b' '; 3];
        for (slot, b) in fmt.iter_mut().zip(f.iter()) {
            *slot = *b;
        }
        return Frame::Verbatim {
            format: fmt,
            text: bytes::Bytes::copy_from_slice(&text.as_bytes()),
        };
    }
    if let Ok(Value::Table(m)) = t.raw_get::<Value>("map") {
        let mut pairs = Vec::new();
        for (k, v) in m.pairs::<Value, Value>().flatten() {
            pairs.push((
                lua_to_frame(&k, resp3, depth + 1),
                lua_to_frame(&v, resp3, depth + 1),
            ));
        }
        return Frame::Map(pairs);
    }
    if let Ok(Value::Table(s)) = t.raw_get::<Value>("set") {
        let mut items = Vec::new();
        for (k, _) in s.pairs::<Value, Value>().flatten() {
            items.push(lua_to_frame(&k, resp3, depth + 1));
        }
        return Frame::Set(items);
    }
    let mut items = Vec::new();
    let mut i = 1;
    loop {
        match t.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(v) => items.push(lua_to_frame(&v, resp3, depth + 1)),
        }
        i += 1;
    }
    Frame::Array(items)
}

/// `(long long)` of a Lua number, as C truncates it (saturating, NaN as 0).
fn number_to_i64(n: f64) -> i64 {
    if n.is_nan() { 0 } else { n as i64 }
}

/// An error message as Redis sends it: one line, without a leading `-`.
pub fn error_text(msg: &str) -> String {
    let msg = msg.strip_prefix('-').unwrap_or(msg);
    msg.replace(['\r', '\n'], " ")
}

/// A short description of a value for error messages.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string_lossy(),
        Value::Integer(i) => i.to_string(),
        Value::Number(n) => format_g17(*n),
        Value::Error(e) => super::root_message(e),
        _ => "execution failure".to_owned(),
    }
}

/// C's `%.17g`, which Redis uses to pass Lua numbers to commands.
pub fn format_g17(n: f64) -> String {
    format_g(n, 17)
}

/// C's `%.<precision>g`.
pub fn format_g(n: f64, precision: usize) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.to_owned();
    }
    if n.is_infinite() {
        return if n > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if n == 0.0 {
        return if n.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let p = precision.max(1);
    // The exponent after rounding to p significant digits.
    let sci = format!("{:.*e}", p - 1, n);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= p as i32 {
        let mantissa = strip_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{n:.decimals$}")).to_owned()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::format_g;

    #[test]
    fn g_format_matches_c() {
        assert_eq!(format_g(1.0, 17), "1");
        assert_eq!(format_g(0.1, 17), "0.10000000000000001");
        assert_eq!(format_g(3.0e20, 17), "3e+20");
        assert_eq!(format_g(-2.5, 17), "-2.5");
        assert_eq!(format_g(1e-5, 17), "1.0000000000000001e-05");
        assert_eq!(format_g(123456.0, 14), "123456");
        assert_eq!(format_g(0.5, 14), "0.5");
        assert_eq!(format_g(1e100, 14), "1e+100");
    }
}
