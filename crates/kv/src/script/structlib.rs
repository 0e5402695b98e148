//! `struct`, the binary packing library Redis ships to scripts (Roberto Ierusalimschy's struct.c, as
//! built on a 64-bit Linux Redis): `pack(fmt, ...)`, `unpack(fmt, data [, pos])` and `size(fmt)`.
//!
//! A format is a sequence of options: `>` big and `<` little endian (little is native), `![n]` maximum
//! alignment (a power of two, 8 without `n`), `x` a zero byte, `b`/`B` signed/unsigned char, `h`/`H`
//! short, `l`/`L` long, `T` size_t, `i[n]`/`I[n]` an integer of `n` bytes (4 without `n`, at most 32),
//! `c[n]` `n` chars (packing `c0` takes the whole string; unpacking `c0` takes the length from the number
//! unpacked just before), `s` a zero-terminated string, `f` float, `d` double, spaces ignored.
//! Values are aligned to the smaller of their size and the maximum alignment (1 until `!` says otherwise).
//! The quirks of the C original are kept where a script could see them: integers wider than 8 bytes carry
//! only 64 bits, and `size` skips unknown letters where `pack` and `unpack` refuse them.

use mlua::{Lua, MultiValue, Table, Value};

/// The most bytes an `i`/`I` option may take.
const MAX_INT_SIZE: usize = 32;

/// Alignment `!` means without a number: a double's, on x86-64.
const MAX_ALIGN: usize = 8;

/// The `struct` table.
pub fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("pack", lua.create_function(pack)?)?;
    t.raw_set("unpack", lua.create_function(unpack)?)?;
    t.raw_set("size", lua.create_function(size)?)?;
    Ok(t)
}

/// A Lua error at the calling script's line, as `luaL_error` raises it.
fn fail<T>(lua: &Lua, msg: impl std::fmt::Display) -> mlua::Result<T> {
    let at = lua
        .inspect_stack(1, |d| {
            let line = d.current_line().filter(|&l| l > 0)?;
            let src = d.source().short_src?.into_owned();
            Some(format!("{src}:{line}: "))
        })
        .flatten()
        .unwrap_or_default();
    Err(mlua::Error::RuntimeError(format!("{at}{msg}")))
}

/// `luaL_argerror`'s message.
fn bad_arg<T>(lua: &Lua, func: &str, n: usize, msg: impl std::fmt::Display) -> mlua::Result<T> {
    fail(lua, format!("bad argument #{n} to '{func}' ({msg})"))
}

/// Byte order and maximum alignment, as the options so far set them.
struct Header {
    big_endian: bool,
    align: usize,
}

impl Default for Header {
    fn default() -> Self {
        Header {
            big_endian: false,
            align: 1,
        }
    }
}

/// Reads a format one option at a time.
struct Format<'a> {
    fmt: &'a [u8],
    at: usize,
    func: &'static str,
}

impl<'a> Format<'a> {
    fn new(fmt: &'a [u8], func: &'static str) -> Self {
        Format { fmt, at: 0, func }
    }

    /// The decimal number at the cursor, or `default` when there is none.
    fn number(&mut self, lua: &Lua, default: usize) -> mlua::Result<usize> {
        if !self.fmt.get(self.at).is_some_and(u8::is_ascii_digit) {
            return Ok(default);
        }
        let mut n: usize = 0;
        while let Some(&d) = self.fmt.get(self.at).filter(|d| d.is_ascii_digit()) {
            n = match n
                .checked_mul(10)
                .and_then(|n| n.checked_add(usize::from(d - b'0')))
            {
                Some(n) if n <= i32::MAX as usize => n,
                _ => return fail(lua, "integral size overflow"),
            };
            self.at += 1;
        }
        Ok(n)
    }

    /// The next option and its size in bytes (0 for the options that take none).
    fn next(&mut self, lua: &Lua) -> mlua::Result<Option<(u8, usize)>> {
        let Some(&opt) = self.fmt.get(self.at) else {
            return Ok(None);
        };
        self.at += 1;
        let size = match opt {
            b'b' | b'B' | b'x' => 1,
            b'h' | b'H' => 2,
            b'l' | b'L' | b'T' | b'd' => 8,
            b'f' => 4,
            b'c' => self.number(lua, 1)?,
            b'i' | b'I' => {
                let n = self.number(lua, 4)?;
                if n > MAX_INT_SIZE {
                    return fail(
                        lua,
                        format!("integral size {n} is larger than limit of {MAX_INT_SIZE}"),
                    );
                }
                n
            }
            _ => 0,
        };
        Ok(Some((opt, size)))
    }

    /// Applies a byte-order, alignment or blank option; anything else is an invalid option.
    fn control(&mut self, lua: &Lua, opt: u8, h: &mut Header) -> mlua::Result<()> {
        match opt {
            b' ' => {}
            b'>' => h.big_endian = true,
            b'<' => h.big_endian = false,
            b'!' => {
                let a = self.number(lua, MAX_ALIGN)?;
                if !a.is_power_of_two() {
                    return fail(lua, format!("alignment {a} is not a power of 2"));
                }
                h.align = a;
            }
            _ => {
                return bad_arg(
                    lua,
                    self.func,
                    1,
                    format!("invalid format option '{}'", char::from(opt)),
                );
            }
        }
        Ok(())
    }
}

/// `bytes` (`N` of them) turned between little-endian order and the format's: reversed when it is big
/// endian. Floats are packed and unpacked through their little-endian forms.
fn little_endian<const N: usize>(bytes: &[u8], big_endian: bool) -> [u8; N] {
    let mut b = [0u8; N];
    b.copy_from_slice(bytes);
    if big_endian {
        b.reverse();
    }
    b
}

/// Padding bytes before a value of `size` bytes at offset `len`.
fn padding(len: usize, h: &Header, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align);
    // As the original computes it, also for sizes that are no power of two.
    size.wrapping_sub(len & size.wrapping_sub(1)) & size.wrapping_sub(1)
}

/// The format string argument (numbers convert, as `luaL_checkstring` converts them).
/// String argument `n` (1-based) of `func`; numbers convert, as `luaL_checkstring` converts them.
fn string_arg(lua: &Lua, func: &'static str, args: &[Value], n: usize) -> mlua::Result<Vec<u8>> {
    match args.get(n - 1) {
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(v @ (Value::Integer(_) | Value::Number(_))) => Ok(lua
            .coerce_string(v.clone())?
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_default()),
        other => bad_arg(
            lua,
            func,
            n,
            format!(
                "string expected, got {}",
                other.map_or("no value", Value::type_name)
            ),
        ),
    }
}

fn pack(lua: &Lua, args: MultiValue) -> mlua::Result<mlua::LuaString> {
    let args: Vec<Value> = args.into_iter().collect();
    let fmt = string_arg(lua, "pack", &args, 1)?;
    let mut f = Format::new(&fmt, "pack");
    let mut h = Header::default();
    let mut out: Vec<u8> = Vec::new();
    // 1-based index of the next value argument.
    let mut arg = 2;
    // The original pushes a nil after the arguments, so the first one missing reads as nil.
    let missing = |arg: usize| {
        if arg == args.len() + 1 {
            "nil"
        } else {
            "no value"
        }
    };
    let number = |arg: usize| -> mlua::Result<f64> {
        let v = args.get(arg - 1);
        match v.map(|v| lua.coerce_number(v.clone())) {
            Some(Ok(Some(n))) => Ok(n),
            _ => bad_arg(
                lua,
                "pack",
                arg,
                format!(
                    "number expected, got {}",
                    v.map_or(missing(arg), Value::type_name)
                ),
            ),
        }
    };
    while let Some((opt, mut size)) = f.next(lua)? {
        let pad = padding(out.len(), &h, opt, size);
        out.resize(out.len() + pad, 0);
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let n = number(arg)?;
                arg += 1;
                // Negative numbers through the signed type, so they wrap as two's complement.
                let mut value = if n < 0.0 { n as i64 as u64 } else { n as u64 };
                let mut bytes = vec![0u8; size];
                for i in 0..size {
                    let at = if h.big_endian { size - 1 - i } else { i };
                    bytes[at] = (value & 0xff) as u8;
                    value = value.checked_shr(8).unwrap_or(0);
                }
                out.extend_from_slice(&bytes);
            }
            b'x' => out.push(0),
            b'f' => {
                let v = number(arg)? as f32;
                arg += 1;
                out.extend_from_slice(&little_endian::<4>(&v.to_le_bytes(), h.big_endian));
            }
            b'd' => {
                let v = number(arg)?;
                arg += 1;
                out.extend_from_slice(&little_endian::<8>(&v.to_le_bytes(), h.big_endian));
            }
            b'c' | b's' => {
                let v = args.get(arg - 1);
                let s = match v.map(|v| lua.coerce_string(v.clone())) {
                    Some(Ok(Some(s))) => s.as_bytes().to_vec(),
                    _ => {
                        return bad_arg(
                            lua,
                            "pack",
                            arg,
                            format!(
                                "string expected, got {}",
                                v.map_or(missing(arg), Value::type_name)
                            ),
                        );
                    }
                };
                arg += 1;
                if size == 0 {
                    size = s.len();
                }
                if s.len() < size {
                    // The original names the argument after the string.
                    return bad_arg(lua, "pack", arg, "string too short");
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                }
            }
            _ => f.control(lua, opt, &mut h)?,
        }
    }
    lua.create_string(&out)
}

fn unpack(lua: &Lua, args: MultiValue) -> mlua::Result<MultiValue> {
    let args: Vec<Value> = args.into_iter().collect();
    let fmt = string_arg(lua, "unpack", &args, 1)?;
    let data = string_arg(lua, "unpack", &args, 2)?;
    let start = match args.get(2) {
        None | Some(Value::Nil) => 1,
        Some(v) => match lua.coerce_number(v.clone()) {
            Ok(Some(n)) => n as i64,
            _ => {
                return bad_arg(
                    lua,
                    "unpack",
                    3,
                    format!("number expected, got {}", v.type_name()),
                );
            }
        },
    };
    if start <= 0 {
        return bad_arg(lua, "unpack", 3, "offset must be 1 or greater");
    }
    let mut pos = usize::try_from(start - 1).unwrap_or(usize::MAX);
    let mut f = Format::new(&fmt, "unpack");
    let mut h = Header::default();
    let mut out: Vec<Value> = Vec::new();
    let fits = |pos: usize, size: usize| size <= data.len() && pos <= data.len() - size;
    while let Some((opt, mut size)) = f.next(lua)? {
        pos = pos.saturating_add(padding(pos, &h, opt, size));
        if !fits(pos, size) {
            return bad_arg(lua, "unpack", 2, "data string too short");
        }
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let bytes = &data[pos..pos + size];
                // Only the last 64 bits shifted in survive, as in the original's 64-bit accumulator.
                let mut l: u64 = 0;
                for i in 0..size {
                    let b = if h.big_endian {
                        bytes[i]
                    } else {
                        bytes[size - 1 - i]
                    };
                    l = (l << 8) | u64::from(b);
                }
                let n = if opt.is_ascii_lowercase() {
                    let mask = u64::MAX.wrapping_shl((size * 8).wrapping_sub(1) as u32);
                    if l & mask != 0 {
                        l |= mask;
                    }
                    l as i64 as f64
                } else {
                    l as f64
                };
                out.push(Value::Number(n));
            }
            b'x' => {}
            b'f' => {
                let v = f32::from_le_bytes(little_endian(&data[pos..pos + 4], h.big_endian));
                out.push(Value::Number(f64::from(v)));
            }
            b'd' => {
                let v = f64::from_le_bytes(little_endian(&data[pos..pos + 8], h.big_endian));
                out.push(Value::Number(v));
            }
            b'c' => {
                if size == 0 {
                    let previous = match out.last() {
                        Some(v) => lua.coerce_number(v.clone()).ok().flatten(),
                        None => None,
                    };
                    let Some(n) = previous else {
                        return fail(lua, "format 'c0' needs a previous size");
                    };
                    out.pop();
                    size = n as usize;
                    if !fits(pos, size) {
                        return bad_arg(lua, "unpack", 2, "data string too short");
                    }
                }
                out.push(Value::String(lua.create_string(&data[pos..pos + size])?));
            }
            b's' => {
                let Some(len) = data[pos..].iter().position(|&b| b == 0) else {
                    return fail(lua, "unfinished string in data");
                };
                out.push(Value::String(lua.create_string(&data[pos..pos + len])?));
                size = len + 1;
            }
            _ => f.control(lua, opt, &mut h)?,
        }
        pos += size;
    }
    out.push(Value::Number((pos + 1) as f64));
    Ok(out.into_iter().collect())
}

fn size(lua: &Lua, args: MultiValue) -> mlua::Result<f64> {
    let args: Vec<Value> = args.into_iter().collect();
    let fmt = string_arg(lua, "size", &args, 1)?;
    let mut f = Format::new(&fmt, "size");
    let mut h = Header::default();
    let mut pos = 0usize;
    while let Some((opt, size)) = f.next(lua)? {
        pos += padding(pos, &h, opt, size);
        if opt == b's' {
            return bad_arg(lua, "size", 1, "option 's' has no fixed size");
        }
        if opt == b'c' && size == 0 {
            return bad_arg(lua, "size", 1, "option 'c0' has no fixed size");
        }
        if !opt.is_ascii_alphanumeric() {
            f.control(lua, opt, &mut h)?;
        }
        pos += size;
    }
    Ok(pos as f64)
}
