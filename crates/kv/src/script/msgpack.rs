//! `cmsgpack`, lua-cmsgpack as Redis ships it: `pack(...)`, `unpack(s)`, `unpack_one(s, offset)`,
//! `unpack_limit(s, limit, offset)`. Tables nest at most 16 deep when packed (deeper ones pack as nil),
//! a table is an array when its keys are exactly 1..n. Unpacking refuses data nested over 1000 deep.

use mlua::{Lua, MultiValue, Table, Value};

/// Deepest table nesting packed.
const MAX_NESTING: usize = 16;

/// Deepest array or map nesting unpacked.
const MAX_UNPACK_DEPTH: usize = 1000;

fn err<T>(msg: &str) -> mlua::Result<T> {
    Err(mlua::Error::RuntimeError(msg.to_owned()))
}

/// The `cmsgpack` table.
pub fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "pack",
        lua.create_function(|lua, args: MultiValue| {
            if args.is_empty() {
                return err("MessagePack pack needs input.");
            }
            let mut out = Vec::new();
            for v in &args {
                pack(v, 0, &mut out)?;
            }
            lua.create_string(&out)
        })?,
    )?;
    t.raw_set(
        "unpack",
        lua.create_function(|lua, s: mlua::LuaString| {
            let bytes = s.as_bytes();
            let mut pos = 0;
            let mut values = Vec::new();
            while pos < bytes.len() {
                values.push(unpack(lua, &bytes, &mut pos, 0)?);
            }
            Ok(MultiValue::from_iter(values))
        })?,
    )?;
    t.raw_set(
        "unpack_one",
        lua.create_function(|lua, (s, offset): (mlua::LuaString, Option<i64>)| {
            let (next, mut values) = unpack_limit(lua, &s.as_bytes(), 1, offset.unwrap_or(0))?;
            values.insert(0, Value::Integer(next));
            Ok(MultiValue::from_iter(values))
        })?,
    )?;
    t.raw_set(
        "unpack_limit",
        lua.create_function(
            |lua, (s, limit, offset): (mlua::LuaString, i64, Option<i64>)| {
                let (next, mut values) =
                    unpack_limit(lua, &s.as_bytes(), limit, offset.unwrap_or(0))?;
                values.insert(0, Value::Integer(next));
                Ok(MultiValue::from_iter(values))
            },
        )?,
    )?;
    t.raw_set("_NAME", "cmsgpack")?;
    t.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    Ok(t)
}

fn unpack_limit(lua: &Lua, s: &[u8], limit: i64, offset: i64) -> mlua::Result<(i64, Vec<Value>)> {
    if offset < 0 || limit < 0 {
        return err("Invalid request to unpack with offset of 0 and limit of 0.");
    }
    let mut pos = usize::try_from(offset).unwrap_or(usize::MAX);
    if pos > s.len() {
        return err("Start offset greater than input length.");
    }
    let mut values = Vec::new();
    while pos < s.len() && (limit == 0 || (values.len() as i64) < limit) {
        values.push(unpack(lua, s, &mut pos, 0)?);
    }
    let next = if pos >= s.len() { -1 } else { pos as i64 };
    Ok((next, values))
}

fn pack_number(n: f64, out: &mut Vec<u8>) {
    if n.fract() == 0.0 && (-9.223_372_036_854_776e18..1.844_674_407_370_955_2e19).contains(&n) {
        if n >= 0.0 {
            pack_uint(n as u64, out);
        } else {
            pack_int(n as i64, out);
        }
    } else {
        let f = n as f32;
        if f64::from(f) == n {
            out.push(0xca);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        } else {
            out.push(0xcb);
            out.extend_from_slice(&n.to_bits().to_be_bytes());
        }
    }
}

fn pack_uint(n: u64, out: &mut Vec<u8>) {
    if n < 128 {
        out.push(n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0xcc, n as u8]);
    } else if n <= 0xffff {
        out.push(0xcd);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(0xce);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn pack_int(n: i64, out: &mut Vec<u8>) {
    if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn pack_len(len: usize, small: (u8, usize), codes: [u8; 3], out: &mut Vec<u8>) {
    if len < small.1 {
        out.push(small.0 | len as u8);
    } else if len <= 0xff && codes[0] != 0 {
        out.extend_from_slice(&[codes[0], len as u8]);
    } else if len <= 0xffff {
        out.push(codes[1]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(codes[2]);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn pack(v: &Value, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match v {
        Value::Nil => out.push(0xc0),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => {
            if *i >= 0 {
                pack_uint(*i as u64, out);
            } else {
                pack_int(*i, out);
            }
        }
        Value::Number(n) => pack_number(*n, out),
        Value::String(s) => {
            let b = s.as_bytes();
            pack_len(b.len(), (0xa0, 32), [0xd9, 0xda, 0xdb], out);
            out.extend_from_slice(&b);
        }
        Value::Table(t) if level < MAX_NESTING => {
            // Two passes: the first only looks at keys, so no entry is held (Lua references are a
            // limited resource).
            let mut count = 0usize;
            let mut max = 0f64;
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
                max = max.max(n);
            }
            if is_array && max as usize == count {
                pack_len(count, (0x90, 16), [0, 0xdc, 0xdd], out);
                for i in 1..=count {
                    let v: Value = t.raw_get(i)?;
                    pack(&v, level + 1, out)?;
                }
            } else {
                pack_len(count, (0x80, 16), [0, 0xde, 0xdf], out);
                for pair in t.pairs::<Value, Value>() {
                    let (k, v) = pair?;
                    pack(&k, level + 1, out)?;
                    pack(&v, level + 1, out)?;
                }
            }
        }
        _ => out.push(0xc0),
    }
    Ok(())
}

fn take<'a>(s: &'a [u8], pos: &mut usize, n: usize) -> mlua::Result<&'a [u8]> {
    match s.get(*pos..*pos + n) {
        Some(b) => {
            *pos += n;
            Ok(b)
        }
        None => err("Missing bytes in input."),
    }
}

fn be(s: &[u8], pos: &mut usize, n: usize) -> mlua::Result<u64> {
    Ok(take(s, pos, n)?
        .iter()
        .fold(0u64, |a, &b| (a << 8) | u64::from(b)))
}

fn unpack(lua: &Lua, s: &[u8], pos: &mut usize, depth: usize) -> mlua::Result<Value> {
    let tag = take(s, pos, 1)?[0];
    if matches!(tag, 0x80..=0x9f | 0xdc..=0xdf) && depth >= MAX_UNPACK_DEPTH {
        // lua-cmsgpack recurses in C until the Lua stack is full; a Rust recursion must stop before the
        // thread's stack does.
        return err("too deeply nested data (over 1000 levels).");
    }
    let num = |n: f64| Ok(Value::Number(n));
    match tag {
        0x00..=0x7f => num(f64::from(tag)),
        0xe0..=0xff => num(f64::from(tag as i8)),
        0xc0 => Ok(Value::Nil),
        0xc2 => Ok(Value::Boolean(false)),
        0xc3 => Ok(Value::Boolean(true)),
        0xcc => num(be(s, pos, 1)? as f64),
        0xcd => num(be(s, pos, 2)? as f64),
        0xce => num(be(s, pos, 4)? as f64),
        0xcf => num(be(s, pos, 8)? as f64),
        0xd0 => num(f64::from(be(s, pos, 1)? as u8 as i8)),
        0xd1 => num(f64::from(be(s, pos, 2)? as u16 as i16)),
        0xd2 => num(f64::from(be(s, pos, 4)? as u32 as i32)),
        0xd3 => num(be(s, pos, 8)? as i64 as f64),
        0xca => num(f64::from(f32::from_bits(be(s, pos, 4)? as u32))),
        0xcb => num(f64::from_bits(be(s, pos, 8)?)),
        0xa0..=0xbf => string(lua, s, pos, usize::from(tag & 0x1f)),
        0xd9 | 0xc4 => {
            let n = be(s, pos, 1)? as usize;
            string(lua, s, pos, n)
        }
        0xda | 0xc5 => {
            let n = be(s, pos, 2)? as usize;
            string(lua, s, pos, n)
        }
        0xdb | 0xc6 => {
            let n = be(s, pos, 4)? as usize;
            string(lua, s, pos, n)
        }
        0x90..=0x9f => array(lua, s, pos, usize::from(tag & 0x0f), depth + 1),
        0xdc => {
            let n = be(s, pos, 2)? as usize;
            array(lua, s, pos, n, depth + 1)
        }
        0xdd => {
            let n = be(s, pos, 4)? as usize;
            array(lua, s, pos, n, depth + 1)
        }
        0x80..=0x8f => map(lua, s, pos, usize::from(tag & 0x0f), depth + 1),
        0xde => {
            let n = be(s, pos, 2)? as usize;
            map(lua, s, pos, n, depth + 1)
        }
        0xdf => {
            let n = be(s, pos, 4)? as usize;
            map(lua, s, pos, n, depth + 1)
        }
        _ => err("Bad data format in input."),
    }
}

fn string(lua: &Lua, s: &[u8], pos: &mut usize, n: usize) -> mlua::Result<Value> {
    Ok(Value::String(lua.create_string(take(s, pos, n)?)?))
}

fn array(lua: &Lua, s: &[u8], pos: &mut usize, n: usize, depth: usize) -> mlua::Result<Value> {
    let t = lua.create_table_with_capacity(n.min(1 << 16), 0)?;
    for i in 1..=n {
        t.raw_set(i, unpack(lua, s, pos, depth)?)?;
    }
    Ok(Value::Table(t))
}

fn map(lua: &Lua, s: &[u8], pos: &mut usize, n: usize, depth: usize) -> mlua::Result<Value> {
    let t = lua.create_table_with_capacity(0, n.min(1 << 16))?;
    for _ in 0..n {
        let k = unpack(lua, s, pos, depth)?;
        let v = unpack(lua, s, pos, depth)?;
        if !matches!(k, Value::Nil) {
            t.raw_set(k, v)?;
        }
    }
    Ok(Value::Table(t))
}
