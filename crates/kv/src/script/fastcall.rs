//! `redis.call` and `redis.pcall` as plain Lua C functions.
//!
//! Through mlua, every `redis.call` paid for its callback machinery: the state lock mlua's `send`
//! feature takes around each API call, the arguments gathered into a `MultiValue`, a registry reference
//! per converted value and another per table the reply became. A short script spends most of its time
//! in those calls (three per call of the `strata-bench kv` EVALSHA script), so here they read their
//! arguments off the Lua stack and push the reply onto it directly ([`push_frame`] has Redis's
//! conversions from replies to Lua values). The script's run is started the same way
//! ([`call_protected`]): its KEYS and ARGV tables built on the stack, one state lock for the whole run.
//!
//! The run's [`RunCtx`] is reached through a thread-local pointer that [`Current`] sets for the length
//! of a run (the script runs on the thread that started it, hook included).
//!
//! Raising: `redis.call` raises the error table it pushed, as Redis does, with `lua_error`, which
//! `longjmp`s out of the C function. It is called from the outermost frame only, after every Rust
//! value of the call has been dropped. The other Lua calls made here raise only when Lua cannot
//! allocate, and such a jump would leak the few values alive at the time (no memory limit is set on
//! the interpreters, so that means the process is out of memory anyway).
//!
//! The one module of strata-kv that allows `unsafe`: the Lua C API is unsafe throughout.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::c_int;
use std::panic::AssertUnwindSafe;
use strata_resp::Arg;

use bytes::{BufMut, BytesMut};
use mlua::ffi;
use strata_resp::{Frame, ProtocolVersion};

use super::{IGNORE_ERROR_STATS, RunCtx, convert};

thread_local! {
    /// The run context of the script running on this thread; null between runs.
    static CURRENT: Cell<*mut RunCtx> = const { Cell::new(std::ptr::null_mut()) };
}

/// Deepest reply nesting converted (command replies nest a few levels at most).
const MAX_DEPTH: usize = 100;

/// `redis.pcall` and `redis.call` as functions of `lua`.
pub(super) fn functions(lua: &mlua::Lua) -> mlua::Result<(mlua::Function, mlua::Function)> {
    // SAFETY: both are C functions that keep the Lua C API's rules (see the module documentation).
    let pcall = unsafe { lua.create_c_function(redis_pcall) }?;
    // SAFETY: as above.
    let call = unsafe { lua.create_c_function(redis_call) }?;
    Ok((pcall, call))
}

/// Calls `f(KEYS, ARGV)` protected, with `handler` as its message handler, the two tables built from
/// `keys` and `args` (also set as the globals `KEYS` and `ARGV` for the run when `globals`: EVAL scripts
/// read them there); returns whether the script succeeded and its first result or the handler's error
/// table. This is what Lua's `xpcall` does; calling `lua_pcall` here rather than running
/// `xpcall(function() return f(keys, args) end, handler)` in Lua saves the closure, its three upvalues
/// and their collection on every run.
pub(super) fn call_protected(
    lua: &mlua::Lua,
    handler: &mlua::Function,
    f: &mlua::Function,
    keys: &[Arg],
    args: &[Arg],
    globals: bool,
) -> mlua::Result<(bool, mlua::Value)> {
    // SAFETY: `exec_raw` runs the closure protected, so an error raised in it outside the inner
    // `lua_pcall` (out of memory) becomes an `Err`; the closure starts on a stack that holds the two
    // functions, makes room before pushing, and leaves the two results.
    unsafe {
        lua.exec_raw((handler, f), |state| {
            // The closure runs as a C function, with LUA_MINSTACK (20) free slots: it uses 5 at most.
            push_strings(state, keys);
            push_strings(state, args);
            if globals {
                ffi::lua_pushvalue(state, ffi::LUA_GLOBALSINDEX);
                push_bytes(state, b"KEYS");
                ffi::lua_pushvalue(state, -4);
                ffi::lua_rawset(state, -3);
                push_bytes(state, b"ARGV");
                ffi::lua_pushvalue(state, -3);
                ffi::lua_rawset(state, -3);
                ffi::lua_settop(state, -2);
            }
            // handler, f, KEYS, ARGV -> handler, result (or the handler's error table) -> ok, result.
            let status = ffi::lua_pcall(state, 2, 1, -4);
            ffi::lua_pushboolean(state, c_int::from(status == 0));
            ffi::lua_replace(state, -3);
            if globals {
                ffi::lua_pushvalue(state, ffi::LUA_GLOBALSINDEX);
                for name in [&b"KEYS"[..], b"ARGV"] {
                    push_bytes(state, name);
                    ffi::lua_pushnil(state);
                    ffi::lua_rawset(state, -3);
                }
                ffi::lua_settop(state, -2);
            }
        })
    }
}

/// Pushes an array of the strings `items`.
unsafe fn push_strings(state: *mut ffi::lua_State, items: &[Arg]) {
    // SAFETY: the caller has room for the table and one string.
    unsafe {
        ffi::lua_createtable(state, table_size(items.len()), 0);
        for (i, item) in items.iter().enumerate() {
            push_bytes(state, item);
            ffi::lua_rawseti_(state, -2, table_size(i + 1));
        }
    }
}

/// While alive, `redis.call` on this thread runs in the context it was entered with, which stays
/// borrowed for as long.
pub(super) struct Current<'a> {
    previous: *mut RunCtx,
    _ctx: std::marker::PhantomData<&'a mut RunCtx>,
}

impl<'a> Current<'a> {
    /// Makes `ctx` the running script's context.
    pub(super) fn enter(ctx: &'a mut RunCtx) -> Current<'a> {
        let previous = CURRENT.with(|c| c.replace(ctx));
        Current {
            previous,
            _ctx: std::marker::PhantomData,
        }
    }
}

impl Drop for Current<'_> {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// Runs `f` on the running script's context, if a script is running on this thread.
pub(super) fn with_current<R>(f: impl FnOnce(&mut RunCtx) -> R) -> Option<R> {
    let ctx = CURRENT.with(Cell::get);
    // SAFETY: the pointer was set by `Current::enter` from a `&mut RunCtx` the guard keeps borrowed, and
    // the functions that get here do not nest (a script cannot run a script), so this is the only
    // reference while `f` runs.
    unsafe { ctx.as_mut() }.map(f)
}

/// `redis.call(...)`: the command's reply; an error reply is raised.
///
/// # Safety
/// Called by Lua only, as a C function.
unsafe extern "C-unwind" fn redis_call(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: called by Lua with a valid state.
    if unsafe { call(state) } {
        // Nothing with a destructor is alive in this frame: the jump skips nothing.
        // SAFETY: the error table is on top of the stack.
        unsafe { ffi::lua_error(state) }
    } else {
        1
    }
}

/// `redis.pcall(...)`: the command's reply, an error reply as its error table.
///
/// # Safety
/// Called by Lua only, as a C function.
unsafe extern "C-unwind" fn redis_pcall(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: called by Lua with a valid state.
    unsafe { call(state) };
    1
}

/// Runs the command the arguments on the stack name and pushes its reply (an error table when it
/// failed or could not run). Returns whether it failed.
unsafe fn call(state: *mut ffi::lua_State) -> bool {
    // SAFETY (the whole function): `state` is the running interpreter, the indices read are within
    // `lua_gettop`, and the pushes fit in the free slots a C function starts with (see below).
    unsafe {
        let argc = ffi::lua_gettop(state);
        if argc == 0 {
            push_error(
                state,
                b"ERR Please specify at least one argument for this redis lib call",
                false,
            );
            return true;
        }
        // The arguments side by side in one buffer, which the command borrows them from (an allocation
        // per call, not per argument).
        // Room for a typical call's arguments at once, where growing from empty took three allocations.
        let mut buf = BytesMut::with_capacity(128);
        let mut ends: smallvec::SmallVec<[usize; 8]> = smallvec::SmallVec::new();
        for i in 1..=argc {
            match ffi::lua_type(state, i) {
                ffi::LUA_TSTRING => {
                    buf.extend_from_slice(string_at(state, i));
                    ends.push(buf.len());
                }
                ffi::LUA_TNUMBER => {
                    push_number(&mut buf, ffi::lua_tonumber(state, i));
                    ends.push(buf.len());
                }
                _ => {
                    ffi::lua_settop(state, 0);
                    push_error(
                        state,
                        b"ERR Lua redis lib command arguments must be strings or integers",
                        false,
                    );
                    return true;
                }
            }
        }
        // The arguments are copied: off the stack with them, so the reply has room even after a call
        // with thousands of arguments (a C function's stack ends at LUAI_MAXCSTACK slots), as in Redis.
        // That leaves LUA_MINSTACK (20) free slots, enough for the reply's first level.
        ffi::lua_settop(state, 0);
        let whole = buf.freeze();
        let args: strata_resp::Args<'_> = ends
            .iter()
            .scan(0, |start, &end| {
                let arg = strata_resp::Arg::part(&whole, *start..end);
                *start = end;
                Some(arg)
            })
            .collect();
        let done = std::panic::catch_unwind(AssertUnwindSafe(|| {
            with_current(|ctx| {
                let reply = match crate::cmd::run_from_script(ctx, &args) {
                    Ok(frame) => frame,
                    Err(message) => {
                        // Refused: counted here, where it happened, as Redis counts it; the table says so,
                        // and the script's reply does not count it again.
                        crate::cmd::record_script_rejection(&ctx.shared, &args, &message);
                        push_error(state, message.as_bytes(), true);
                        ctx.counted_error = Some(message);
                        return true;
                    }
                };
                let resp3 = ctx.client.protocol == ProtocolVersion::Resp3;
                match &reply {
                    Frame::Error(e) | Frame::BulkError(e) => {
                        push_error(state, e, true);
                        ctx.counted_error = Some(String::from_utf8_lossy(e).into_owned());
                        true
                    }
                    other => {
                        push_frame(state, other, resp3, 0);
                        false
                    }
                }
            })
        }));
        match done {
            Ok(Some(failed)) => failed,
            Ok(None) => {
                push_error(
                    state,
                    b"ERR redis.call/pcall can only be called inside a script invocation",
                    false,
                );
                true
            }
            Err(_) => {
                // A bug in a command: the script fails instead of the interpreter's stack unwinding.
                ffi::lua_settop(state, 0);
                push_error(state, b"ERR the command failed unexpectedly", false);
                true
            }
        }
    }
}

/// The string at stack index `i` (which must hold a string).
unsafe fn string_at<'a>(state: *mut ffi::lua_State, i: c_int) -> &'a [u8] {
    let mut len = 0usize;
    // SAFETY: index `i` holds a string, which stays on the stack while the slice is used.
    unsafe {
        let p = ffi::lua_tolstring(state, i, &mut len);
        std::slice::from_raw_parts(p.cast::<u8>(), len)
    }
}

/// Appends a number argument as the command sees it: Redis's `%.17g`, which prints an integral value below 1e17
/// as the integer (the common case, done without the general formatter).
fn push_number(buf: &mut BytesMut, n: f64) {
    if n.fract() == 0.0 && n.abs() < 1e17 && !(n == 0.0 && n.is_sign_negative()) {
        // Not through `write!`: its formatting machinery was ~2% of a short script's run.
        let v = n as i64;
        if v < 0 {
            buf.put_u8(b'-');
        }
        strata_resp::put_uint(buf, v.unsigned_abs());
        return;
    }
    buf.extend_from_slice(convert::format_g17(n).as_bytes());
}

/// Pushes `{err = message}`, flagged as already counted in the error statistics when `counted`.
unsafe fn push_error(state: *mut ffi::lua_State, message: &[u8], counted: bool) {
    // SAFETY: the caller made room for a table and a value.
    unsafe {
        ffi::lua_createtable(state, 0, 2);
        push_bytes(state, message);
        ffi::lua_setfield(state, -2, c"err".as_ptr());
        if counted {
            ffi::lua_pushboolean(state, 1);
            set_field(state, IGNORE_ERROR_STATS.as_bytes());
        }
    }
}

unsafe fn push_bytes(state: *mut ffi::lua_State, b: &[u8]) {
    // SAFETY: a valid state with room for one value.
    unsafe {
        ffi::lua_pushlstring(state, b.as_ptr().cast(), b.len());
    }
}

/// `t[name] = v` for the table under the value on top of the stack; pops the value.
unsafe fn set_field(state: *mut ffi::lua_State, name: &[u8]) {
    // SAFETY: a table at -2 and a value at -1, and room for the key.
    unsafe {
        push_bytes(state, name);
        ffi::lua_insert(state, -2);
        ffi::lua_rawset(state, -3);
    }
}

/// Pushes `{field = <value on top>}` in place of the value on top.
unsafe fn wrap(state: *mut ffi::lua_State, field: &[u8]) {
    // SAFETY: a value on top and room for a table and a key.
    unsafe {
        ffi::lua_createtable(state, 0, 1);
        ffi::lua_insert(state, -2);
        set_field(state, field);
    }
}

/// Pushes a command's reply as the script sees it.
///
/// RESP2: integer → number, bulk → string, nil bulk / nil array → `false`, array → table, status →
/// `{ok=...}`, error → `{err=...}`. RESP3 adds: null → `nil`, map → `{map={...}}`, set →
/// `{set={member=true}}`, double → `{double=n}`, boolean → boolean, big number → `{big_number=s}`,
/// verbatim → `{verbatim_string={format=..., string=...}}`. In RESP2 those arrive as a RESP2 client would
/// see them (a map flattened, a double as a string, a boolean as 0/1).
unsafe fn push_frame(state: *mut ffi::lua_State, frame: &Frame, resp3: bool, depth: usize) {
    // SAFETY (the whole function): the caller made room for 4 values; a nested level makes room for its
    // own before pushing into a table.
    unsafe {
        if depth > MAX_DEPTH || ffi::lua_checkstack(state, 4) == 0 {
            push_error(state, b"ERR reached lua stack limit", false);
            return;
        }
        match frame {
            Frame::Simple(s) => {
                push_bytes(state, s);
                wrap(state, b"ok");
            }
            Frame::Error(e) | Frame::BulkError(e) => push_error(state, e, false),
            Frame::Integer(i) => ffi::lua_pushnumber(state, *i as f64),
            Frame::Bulk(b) => push_bytes(state, b),
            Frame::Null | Frame::NullArray => {
                if resp3 {
                    ffi::lua_pushnil(state);
                } else {
                    ffi::lua_pushboolean(state, 0);
                }
            }
            Frame::Array(items) | Frame::Push(items) => push_array(state, items, resp3, depth),
            Frame::Map(pairs) => {
                if resp3 {
                    ffi::lua_createtable(state, 0, table_size(pairs.len()));
                    for (k, v) in pairs {
                        push_frame(state, k, resp3, depth + 1);
                        if ffi::lua_type(state, -1) == ffi::LUA_TNIL {
                            // No table takes a nil key; no command answers one.
                            ffi::lua_settop(state, -2);
                            continue;
                        }
                        push_frame(state, v, resp3, depth + 1);
                        ffi::lua_rawset(state, -3);
                    }
                    wrap(state, b"map");
                } else {
                    ffi::lua_createtable(state, table_size(pairs.len() * 2), 0);
                    let mut i = 1;
                    for (k, v) in pairs {
                        push_frame(state, k, resp3, depth + 1);
                        ffi::lua_rawseti_(state, -2, i);
                        push_frame(state, v, resp3, depth + 1);
                        ffi::lua_rawseti_(state, -2, i + 1);
                        i += 2;
                    }
                }
            }
            Frame::Set(items) => {
                if resp3 {
                    ffi::lua_createtable(state, 0, table_size(items.len()));
                    for item in items {
                        push_frame(state, item, resp3, depth + 1);
                        if ffi::lua_type(state, -1) == ffi::LUA_TNIL {
                            ffi::lua_settop(state, -2);
                            continue;
                        }
                        ffi::lua_pushboolean(state, 1);
                        ffi::lua_rawset(state, -3);
                    }
                    wrap(state, b"set");
                } else {
                    push_array(state, items, resp3, depth);
                }
            }
            Frame::Double(d) => {
                if resp3 {
                    ffi::lua_pushnumber(state, *d);
                    wrap(state, b"double");
                } else {
                    push_bytes(state, &convert::resp2_double(*d));
                }
            }
            Frame::Boolean(b) => {
                if resp3 {
                    ffi::lua_pushboolean(state, c_int::from(*b));
                } else {
                    ffi::lua_pushnumber(state, if *b { 1.0 } else { 0.0 });
                }
            }
            Frame::BigNumber(n) => {
                push_bytes(state, n);
                if resp3 {
                    wrap(state, b"big_number");
                }
            }
            Frame::Verbatim { format, text } => {
                if resp3 {
                    ffi::lua_createtable(state, 0, 2);
                    push_bytes(state, format);
                    set_field(state, b"format");
                    push_bytes(state, text);
                    set_field(state, b"string");
                    wrap(state, b"verbatim_string");
                } else {
                    push_bytes(state, text);
                }
            }
        }
    }
}

unsafe fn push_array(state: *mut ffi::lua_State, items: &[Frame], resp3: bool, depth: usize) {
    // SAFETY: room for the table was made by the caller; each element makes its own.
    unsafe {
        ffi::lua_createtable(state, table_size(items.len()), 0);
        for (i, item) in items.iter().enumerate() {
            push_frame(state, item, resp3, depth + 1);
            ffi::lua_rawseti_(state, -2, table_size(i + 1));
        }
    }
}

/// A size hint or index as Lua's C API takes it.
fn table_size(n: usize) -> c_int {
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

#[cfg(test)]
mod tests {
    use super::push_number;

    #[test]
    fn numbers_become_the_arguments_redis_passes() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (60.0, "60"),
            (-7.0, "-7"),
            (99_999_999_999_999_990.0, "99999999999999984"),
            (-99_999_999_999_999_990.0, "-99999999999999984"),
            (1e17, "1e+17"),
            (0.5, "0.5"),
            (-0.0, "-0"),
        ];
        for &(n, want) in cases {
            let mut buf = bytes::BytesMut::from(&b"x"[..]);
            push_number(&mut buf, n);
            assert_eq!(std::str::from_utf8(&buf[1..]).unwrap(), want, "{n}");
        }
    }
}
