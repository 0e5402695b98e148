//! `bit`, LuaBitOp's library as Redis ships it: 32-bit operations on numbers.

use mlua::{Lua, Table, Variadic};

/// A Lua number as LuaBitOp normalises it: modulo 2^32, as a signed 32-bit integer.
fn tobit(n: f64) -> i32 {
    let m = n.trunc().rem_euclid(4_294_967_296.0);
    (m as u64 as u32) as i32
}

/// The `bit` table.
pub fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("tobit", lua.create_function(|_, n: f64| Ok(tobit(n)))?)?;
    t.raw_set("bnot", lua.create_function(|_, n: f64| Ok(!tobit(n)))?)?;
    t.raw_set(
        "band",
        lua.create_function(|_, v: Variadic<f64>| Ok(v.iter().fold(-1i32, |a, &n| a & tobit(n))))?,
    )?;
    t.raw_set(
        "bor",
        lua.create_function(|_, v: Variadic<f64>| Ok(v.iter().fold(0i32, |a, &n| a | tobit(n))))?,
    )?;
    t.raw_set(
        "bxor",
        lua.create_function(|_, v: Variadic<f64>| Ok(v.iter().fold(0i32, |a, &n| a ^ tobit(n))))?,
    )?;
    t.raw_set(
        "lshift",
        lua.create_function(|_, (n, s): (f64, f64)| {
            Ok(((tobit(n) as u32) << (tobit(s) as u32 & 31)) as i32)
        })?,
    )?;
    t.raw_set(
        "rshift",
        lua.create_function(|_, (n, s): (f64, f64)| {
            Ok(((tobit(n) as u32) >> (tobit(s) as u32 & 31)) as i32)
        })?,
    )?;
    t.raw_set(
        "arshift",
        lua.create_function(|_, (n, s): (f64, f64)| Ok(tobit(n) >> (tobit(s) as u32 & 31)))?,
    )?;
    t.raw_set(
        "rol",
        lua.create_function(|_, (n, s): (f64, f64)| {
            Ok((tobit(n) as u32).rotate_left(tobit(s) as u32 & 31) as i32)
        })?,
    )?;
    t.raw_set(
        "ror",
        lua.create_function(|_, (n, s): (f64, f64)| {
            Ok((tobit(n) as u32).rotate_right(tobit(s) as u32 & 31) as i32)
        })?,
    )?;
    t.raw_set(
        "bswap",
        lua.create_function(|_, n: f64| Ok((tobit(n) as u32).swap_bytes() as i32))?,
    )?;
    t.raw_set(
        "tohex",
        lua.create_function(|_, (n, digits): (f64, Option<f64>)| {
            let d = digits.map_or(8, tobit);
            let upper = d < 0;
            let width = d.unsigned_abs().min(8) as usize;
            let v = tobit(n) as u32;
            let masked = if width >= 8 {
                v
            } else {
                v & ((1u32 << (width * 4)) - 1)
            };
            Ok(if upper {
                format!("{masked:0width$X}")
            } else {
                format!("{masked:0width$x}")
            })
        })?,
    )?;
    Ok(t)
}
