//! Redis 7 functions: FUNCTION LOAD / LIST / DELETE / FLUSH / DUMP / RESTORE / STATS / KILL and FCALL /
//! FCALL_RO.
//!
//! A library is Lua code starting with `#!lua name=<library>`; running it at load time registers its
//! functions with `redis.register_function` (only that, `redis.log` and the version fields are visible
//! then). Libraries are kept in the functions interpreter and persisted in the storage tree
//! `kvfunctions` (library name → code), so they survive restarts as Redis's RDB keeps them; they are
//! loaded again when first needed after a start.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;
use strata_resp::Arg;

use bytes::Bytes;
use mlua::{Function, Lua, Table, Value};
use strata_resp::Frame;

use super::{CommandSpec, glob_match, unknown_subcommand};
use crate::script::{Engine, RunCtx, Running, flags};
use crate::{Session, Shared};

/// The storage tree holding the libraries' code.
const TREE: &str = "kvfunctions";

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "fcall",
        arity: -3,
        flags: &[
            "noscript",
            "skip_monitor",
            "may_replicate",
            "no_mandatory_keys",
            "stale",
        ],
        no_auth: false,
        run: fcall,
    },
    CommandSpec {
        name: "fcall_ro",
        arity: -3,
        flags: &["noscript", "skip_monitor", "no_mandatory_keys", "stale"],
        no_auth: false,
        run: fcall_ro,
    },
    CommandSpec {
        name: "function",
        arity: -2,
        flags: &[],
        no_auth: false,
        run: function,
    },
];

/// One registered function.
pub(crate) struct FunctionInfo {
    description: Option<String>,
    flags: u32,
    function: Function,
}

/// One library.
pub(crate) struct Library {
    code: Bytes,
    functions: BTreeMap<String, FunctionInfo>,
}

/// The functions interpreter and its libraries.
#[derive(Default)]
pub(crate) struct Functions {
    engine: Option<Engine>,
    libraries: BTreeMap<String, Library>,
    /// Lower-cased function name → library name (function names are case-insensitive, as in Redis).
    index: HashMap<String, String>,
    /// Whether the libraries stored on disk were loaded.
    restored: bool,
}

/// The declared flags of function `name`, if it is loaded and the libraries are not in use (a running
/// function holds them; the caller then assumes the worst).
pub(crate) fn function_flags(sh: &Shared, name: &[u8]) -> Option<u32> {
    let f = sh.scripting.functions.try_lock()?;
    let asked = String::from_utf8_lossy(name).to_ascii_lowercase();
    let lib = f.libraries.get(f.index.get(&asked)?)?;
    lib.functions
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(&asked))
        .map(|(_, info)| info.flags)
}

/// What `redis.register_function` collects while a library loads.
struct LoadCtx {
    started: Instant,
    functions: Vec<(String, FunctionInfo)>,
}

fn lua_err<T>(msg: &str) -> mlua::Result<T> {
    Err(mlua::Error::RuntimeError(format!("ERR {msg}")))
}

/// `redis.register_function(name, callback)` or `redis.register_function{function_name=...,
/// callback=..., flags={...}, description=...}`.
pub(crate) fn register_function(lua: &Lua, args: mlua::MultiValue) -> mlua::Result<()> {
    if lua.app_data_ref::<LoadCtx>().is_none() {
        return lua_err("redis.register_function can only be called on FUNCTION LOAD command");
    }
    let args: Vec<Value> = args.into_iter().collect();
    let (name, info) = match args.as_slice() {
        [Value::Table(t)] => named_args(t)?,
        [_] => {
            return lua_err(
                "calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).",
            );
        }
        [name, callback] => {
            let name = match name {
                Value::String(s) => s.to_string_lossy(),
                Value::Integer(i) => i.to_string(),
                Value::Number(n) => n.to_string(),
                _ => return lua_err("first argument to redis.register_function must be a string"),
            };
            let Value::Function(f) = callback else {
                return lua_err("second argument to redis.register_function must be a function");
            };
            (
                name,
                FunctionInfo {
                    description: None,
                    flags: 0,
                    function: f.clone(),
                },
            )
        }
        _ => return lua_err("wrong number of arguments to redis.register_function"),
    };
    if !valid_name(&name) {
        // Redis 7.0 words this error as for library names.
        return lua_err(
            "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long",
        );
    }
    let Some(mut ctx) = lua.app_data_mut::<LoadCtx>() else {
        return lua_err("redis.register_function can only be called on FUNCTION LOAD command");
    };
    if ctx
        .functions
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(&name))
    {
        return lua_err("Function already exists in the library");
    }
    ctx.functions.push((name, info));
    Ok(())
}

fn named_args(t: &Table) -> mlua::Result<(String, FunctionInfo)> {
    let mut name = None;
    let mut description = None;
    let mut callback = None;
    let mut fflags = 0;
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let Value::String(k) = k else {
            return lua_err("named argument key given to redis.register_function is not a string");
        };
        let key = k.to_string_lossy().to_ascii_lowercase();
        match key.as_str() {
            "function_name" => match v {
                Value::String(s) => name = Some(s.to_string_lossy()),
                _ => {
                    return lua_err(
                        "function_name argument given to redis.register_function must be a string",
                    );
                }
            },
            "description" => match v {
                Value::String(s) => description = Some(s.to_string_lossy()),
                _ => {
                    return lua_err(
                        "description argument given to redis.register_function must be a string",
                    );
                }
            },
            "callback" => match v {
                Value::Function(f) => callback = Some(f),
                _ => {
                    return lua_err(
                        "callback argument given to redis.register_function must be a function",
                    );
                }
            },
            "flags" => {
                let Value::Table(list) = v else {
                    return lua_err(
                        "flags argument to redis.register_function must be a table representing function flags",
                    );
                };
                for item in list.sequence_values::<Value>() {
                    let Value::String(f) = item? else {
                        return lua_err("unknown flag given");
                    };
                    let f = f.to_string_lossy();
                    match flags::NAMES
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(&f))
                    {
                        Some((_, bit)) => fflags |= bit,
                        None => return lua_err("unknown flag given"),
                    }
                }
            }
            _ => return lua_err("unknown argument given to redis.register_function"),
        }
    }
    let Some(name) = name else {
        return lua_err("redis.register_function must get a function name argument");
    };
    let Some(function) = callback else {
        return lua_err("redis.register_function must get a callback argument");
    };
    Ok((
        name,
        FunctionInfo {
            description,
            flags: fflags,
            function,
        },
    ))
}

/// Letters, digits and underscores, at least one.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The library name and the code after the shebang line (its line feed kept, so line numbers hold).
fn parse_metadata(code: &[u8]) -> Result<(String, usize), String> {
    if !code.starts_with(b"#!") {
        return Err("ERR Missing library metadata".to_owned());
    }
    let Some(end) = code.iter().position(|&b| b == b'\n') else {
        return Err("ERR Invalid library metadata".to_owned());
    };
    let line = String::from_utf8_lossy(&code[..end]);
    let parts = split_args(&line);
    let engine = parts
        .first()
        .map_or("", |p| p.strip_prefix("#!").unwrap_or(p));
    let mut name = None;
    for part in parts.iter().skip(1) {
        match part.strip_prefix("name=") {
            Some(n) => {
                if name.is_some() {
                    return Err(
                        "ERR Invalid metadata value, name argument was given multiple times"
                            .to_owned(),
                    );
                }
                name = Some(n.to_owned());
            }
            None => return Err(format!("ERR Invalid metadata value given: {part}")),
        }
    }
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(format!("ERR Engine '{engine}' not found"));
    }
    let Some(name) = name else {
        return Err("ERR Library name was not given".to_owned());
    };
    if !valid_name(&name) {
        return Err("ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long".to_owned());
    }
    Ok((name, end))
}

/// Words separated by blanks, where a word may be quoted (`"a b"`, `'a'`), like Redis's
/// `sdssplitargs` (without its escapes).
fn split_args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return out;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => word.push(c),
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c.is_whitespace() => break,
                None => word.push(c),
            }
            chars.next();
        }
        out.push(word);
    }
}

impl Functions {
    fn engine(&mut self) -> Result<&mut Engine, Frame> {
        if self.engine.is_none() {
            self.engine = Some(
                Engine::new(true)
                    .map_err(|e| Frame::error(format!("ERR cannot start Lua: {e}")))?,
            );
        }
        self.engine
            .as_mut()
            .ok_or_else(|| Frame::error("ERR cannot start Lua"))
    }

    /// Loads the libraries stored on disk, once.
    fn restore_from_storage(&mut self, sh: &Shared) {
        if self.restored {
            return;
        }
        self.restored = true;
        let Ok(tree) = sh.keyspace.storage().tree(TREE) else {
            return;
        };
        let mut codes = Vec::new();
        for item in tree.iter() {
            match item {
                Ok((_, code)) => codes.push(code),
                Err(e) => {
                    tracing::error!(error = %e, "reading stored function libraries failed");
                    return;
                }
            }
        }
        for code in codes {
            if let Err(e) = self.load(&code, true) {
                tracing::error!(error = ?e, "a stored function library does not load");
            }
        }
        publish_counts(sh, self);
    }

    /// Compiles and runs a library's code, and adds its functions (replacing a library of the same name
    /// when `replace`). Returns the library name.
    fn load(&mut self, code: &Bytes, replace: bool) -> Result<String, Frame> {
        let (name, skip) = parse_metadata(code).map_err(Frame::error)?;
        let existing = self.library_key(&name);
        if existing.is_some() && !replace {
            return Err(Frame::error(format!("ERR Library '{name}' already exists")));
        }
        let engine = self.engine()?;
        let chunk = engine
            .compile(&code[skip..], "@user_function")
            .map_err(|e| Frame::error(format!("ERR Error compiling function: {e}")))?;
        let registered = run_loader(engine, &chunk)?;
        if registered.is_empty() {
            return Err(Frame::error("ERR No functions registered"));
        }
        for (f, _) in &registered {
            if let Some(owner) = self.index.get(&f.to_ascii_lowercase())
                && Some(owner) != existing.as_ref()
            {
                return Err(Frame::error(format!("ERR Function {f} already exists")));
            }
        }
        if let Some(old) = existing {
            self.remove(&old);
        }
        for (f, _) in &registered {
            self.index.insert(f.to_ascii_lowercase(), name.clone());
        }
        self.libraries.insert(
            name.clone(),
            Library {
                code: code.clone(),
                functions: registered.into_iter().collect(),
            },
        );
        Ok(name)
    }

    /// The stored name of library `name` (library names are case-insensitive).
    fn library_key(&self, name: &str) -> Option<String> {
        self.libraries
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .cloned()
    }

    fn remove(&mut self, name: &str) -> Option<Library> {
        let key = self.library_key(name)?;
        let lib = self.libraries.remove(&key)?;
        for f in lib.functions.keys() {
            self.index.remove(&f.to_ascii_lowercase());
        }
        Some(lib)
    }

    fn clear(&mut self) {
        self.libraries.clear();
        self.index.clear();
        // A fresh interpreter, as Redis does on FUNCTION FLUSH.
        self.engine = None;
    }

    fn counts(&self) -> (usize, usize) {
        (
            self.libraries.len(),
            self.libraries.values().map(|l| l.functions.len()).sum(),
        )
    }
}

/// Runs a library's top-level code with the load-time API; returns what it registered.
fn run_loader(engine: &Engine, chunk: &Function) -> Result<Vec<(String, FunctionInfo)>, Frame> {
    let lua = &engine.lua;
    let globals = engine.globals.clone();
    let _ = engine.env_meta.raw_set("__index", engine.load_api.clone());
    lua.set_app_data(LoadCtx {
        started: Instant::now(),
        functions: Vec::new(),
    });
    engine.hook_taken();
    let _ = lua.set_hook(
        mlua::HookTriggers::new().every_nth_instruction(10_000),
        |lua, _| {
            let late = lua
                .app_data_ref::<LoadCtx>()
                .is_some_and(|c| c.started.elapsed().as_millis() > 500);
            if late {
                Err(mlua::Error::RuntimeError(
                    "ERR FUNCTION LOAD timeout".to_owned(),
                ))
            } else {
                Ok(mlua::VmState::Continue)
            }
        },
    );
    let result: mlua::Result<()> = chunk.call(());
    lua.remove_hook();
    let _ = engine.env_meta.raw_set("__index", globals);
    let ctx = lua.remove_app_data::<LoadCtx>();
    match result {
        Ok(()) => Ok(ctx.map(|c| c.functions).unwrap_or_default()),
        Err(e) => {
            let msg = crate::script::root_message(&e);
            Err(Frame::error(format!(
                "ERR Error registering functions: {msg}"
            )))
        }
    }
}

fn persist(sh: &Shared, name: &str, code: Option<&[u8]>) {
    let result = sh
        .keyspace
        .storage()
        .tree(TREE)
        .and_then(|tree| match code {
            Some(code) => tree.put(name.as_bytes(), code),
            None => tree.delete(name.as_bytes()),
        });
    if let Err(e) = result {
        tracing::error!(error = %e, "persisting a function library failed");
    }
}

fn persist_all(sh: &Shared, f: &Functions) {
    let result = sh.keyspace.storage().tree(TREE).and_then(|tree| {
        tree.clear()?;
        for (name, lib) in &f.libraries {
            tree.put(name.as_bytes(), &lib.code)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        tracing::error!(error = %e, "persisting the function libraries failed");
    }
}

fn publish_counts(sh: &Shared, f: &Functions) {
    *sh.scripting.function_counts.lock() = f.counts();
    let bytes = f.libraries.values().map(|l| l.code.len()).sum();
    sh.scripting
        .library_bytes
        .store(bytes, std::sync::atomic::Ordering::Relaxed);
}

fn function(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    // KILL and STATS answer while a function runs (they do not wait for the interpreter).
    match sub.as_slice() {
        b"kill" if args.len() == 2 => return sh.scripting.run.kill(false),
        b"stats" if args.len() == 2 => return stats(s, sh),
        b"help" if args.len() == 2 => return help(),
        _ => {}
    }
    let mut guard = sh.scripting.functions.lock();
    let f = &mut *guard;
    f.restore_from_storage(sh);
    let wrong = || {
        Frame::error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try FUNCTION HELP.",
            String::from_utf8_lossy(&args[1]).to_ascii_lowercase()
        ))
    };
    let reply = match sub.as_slice() {
        b"load" => {
            let (replace, code) = match &args[2..] {
                [code] => (false, code),
                [opt, code] if opt.eq_ignore_ascii_case(b"replace") => (true, code),
                [] => return wrong(),
                _ => {
                    return Frame::error(
                        "ERR Unknown option given: ".to_owned()
                            + &String::from_utf8_lossy(&args[2]),
                    );
                }
            };
            if super::scripting::over_memory(sh) {
                return Frame::error("OOM command not allowed when used memory > 'maxmemory'.");
            }
            match f.load(&code.to_bytes(), replace) {
                Ok(name) => {
                    persist(sh, &name, Some(code));
                    Frame::Bulk(Bytes::from(name))
                }
                Err(e) => e,
            }
        }
        b"delete" if args.len() == 3 => {
            let name = String::from_utf8_lossy(&args[2]).into_owned();
            let stored = f.library_key(&name).unwrap_or(name);
            match f.remove(&stored) {
                Some(_) => {
                    persist(sh, &stored, None);
                    Frame::ok()
                }
                None => Frame::error("ERR Library not found"),
            }
        }
        b"flush" => match args.get(2).map(|a| a.to_ascii_lowercase()) {
            None if args.len() == 2 => {
                f.clear();
                persist_all(sh, f);
                Frame::ok()
            }
            Some(mode) if args.len() == 3 && (mode == b"async" || mode == b"sync") => {
                f.clear();
                persist_all(sh, f);
                Frame::ok()
            }
            Some(_) if args.len() == 3 => {
                Frame::error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")
            }
            _ => wrong(),
        },
        b"list" => list(f, &args[2..]),
        b"dump" if args.len() == 2 => Frame::Bulk(dump(f)),
        b"restore" if args.len() == 3 || args.len() == 4 => {
            if super::scripting::over_memory(sh) {
                return Frame::error("OOM command not allowed when used memory > 'maxmemory'.");
            }
            restore(sh, f, args)
        }
        b"restore" => wrong(),
        b"delete" | b"dump" | b"kill" | b"stats" | b"help" => wrong(),
        _ => unknown_subcommand(&args[1], "function"),
    };
    publish_counts(sh, f);
    reply
}

fn help() -> Frame {
    let lines = [
        "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "LOAD [REPLACE] <FUNCTION CODE>",
        "    Create a new library with the given library name and code.",
        "DELETE <LIBRARY NAME>",
        "    Delete the given library.",
        "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
        "    Return general information on all the libraries.",
        "FLUSH [ASYNC|SYNC]",
        "    Delete all the libraries.",
        "KILL",
        "    Kill the current running function.",
        "STATS",
        "    Return information about the current function running.",
        "DUMP",
        "    Return a serialized payload representing the current libraries.",
        "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
        "    Restore the libraries represented by the given payload.",
        "HELP",
        "    Print this help.",
    ];
    Frame::Array(lines.iter().map(|l| Frame::simple(l)).collect())
}

fn stats(s: &Session, sh: &Shared) -> Frame {
    let running = match sh.scripting.run.running() {
        Some(r) if !r.eval && r.client != s.id => Frame::Map(vec![
            (
                Frame::bulk("name"),
                Frame::Bulk(Bytes::from(r.name.clone())),
            ),
            (
                Frame::bulk("command"),
                Frame::Array(r.command.iter().cloned().map(Frame::Bulk).collect()),
            ),
            (
                Frame::bulk("duration_ms"),
                Frame::Integer(r.started.elapsed().as_millis() as i64),
            ),
        ]),
        _ => Frame::Null,
    };
    let (libs, funcs) = if sh.scripting.run.active() {
        *sh.scripting.function_counts.lock()
    } else {
        let mut f = sh.scripting.functions.lock();
        f.restore_from_storage(sh);
        let counts = f.counts();
        *sh.scripting.function_counts.lock() = counts;
        counts
    };
    Frame::Map(vec![
        (Frame::bulk("running_script"), running),
        (
            Frame::bulk("engines"),
            Frame::Map(vec![(
                Frame::bulk("LUA"),
                Frame::Map(vec![
                    (Frame::bulk("libraries_count"), Frame::Integer(libs as i64)),
                    (Frame::bulk("functions_count"), Frame::Integer(funcs as i64)),
                ]),
            )]),
        ),
    ])
}

fn list(f: &Functions, opts: &[Arg]) -> Frame {
    let mut pattern: Option<&Arg> = None;
    let mut with_code = false;
    let mut i = 0;
    while i < opts.len() {
        let o = &opts[i];
        if o.eq_ignore_ascii_case(b"withcode") && !with_code {
            with_code = true;
        } else if o.eq_ignore_ascii_case(b"libraryname") && pattern.is_none() {
            let Some(p) = opts.get(i + 1) else {
                return Frame::error("ERR library name argument was not given");
            };
            pattern = Some(p);
            i += 1;
        } else {
            return Frame::error(format!(
                "ERR Unknown argument {}",
                String::from_utf8_lossy(o)
            ));
        }
        i += 1;
    }
    let mut out = Vec::new();
    for (name, lib) in &f.libraries {
        if let Some(p) = pattern
            && !glob_match(p, name.as_bytes(), false)
        {
            continue;
        }
        let functions = lib
            .functions
            .iter()
            .map(|(fname, info)| {
                Frame::Map(vec![
                    (Frame::bulk("name"), Frame::Bulk(Bytes::from(fname.clone()))),
                    (
                        Frame::bulk("description"),
                        info.description
                            .clone()
                            .map_or(Frame::Null, |d| Frame::Bulk(Bytes::from(d))),
                    ),
                    (Frame::bulk("flags"), Frame::Set(flag_names(info.flags))),
                ])
            })
            .collect();
        let mut entry = vec![
            (
                Frame::bulk("library_name"),
                Frame::Bulk(Bytes::from(name.clone())),
            ),
            (Frame::bulk("engine"), Frame::bulk("LUA")),
            (Frame::bulk("functions"), Frame::Array(functions)),
        ];
        if with_code {
            entry.push((Frame::bulk("library_code"), Frame::Bulk(lib.code.clone())));
        }
        out.push(Frame::Map(entry));
    }
    Frame::Array(out)
}

fn flag_names(bits: u32) -> Vec<Frame> {
    flags::NAMES
        .iter()
        .filter(|(_, b)| bits & b != 0)
        .map(|(n, _)| Frame::bulk(*n))
        .collect()
}

/// The payload's first bytes and format version.
const DUMP_MAGIC: &[u8] = b"STRATAFN\x01";

/// FUNCTION DUMP: every library's code, length-prefixed, with a checksum.
fn dump(f: &Functions) -> Bytes {
    let mut out = DUMP_MAGIC.to_vec();
    for lib in f.libraries.values() {
        out.extend_from_slice(&(lib.code.len() as u32).to_be_bytes());
        out.extend_from_slice(&lib.code);
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_be_bytes());
    Bytes::from(out)
}

/// FNV-1a, 64 bits: catches a damaged or foreign payload.
fn checksum(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn parse_dump(payload: &[u8]) -> Option<Vec<Bytes>> {
    if payload.len() < DUMP_MAGIC.len() + 8 || !payload.starts_with(DUMP_MAGIC) {
        return None;
    }
    let (body, sum) = payload.split_at(payload.len() - 8);
    let sum = u64::from_be_bytes(sum.try_into().ok()?);
    if checksum(body) != sum {
        return None;
    }
    let mut rest = &body[DUMP_MAGIC.len()..];
    let mut codes = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let code = rest.get(4..4 + len)?;
        codes.push(Bytes::copy_from_slice(code));
        rest = &rest[4 + len..];
    }
    Some(codes)
}

fn restore(sh: &Shared, f: &mut Functions, args: &[Arg]) -> Frame {
    let policy = match args.get(3).map(|a| a.to_ascii_lowercase()) {
        None => b"append".to_vec(),
        Some(p) if p == b"flush" || p == b"append" || p == b"replace" => p,
        Some(_) => {
            return Frame::error(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            );
        }
    };
    let Some(codes) = parse_dump(&args[2]) else {
        return Frame::error("ERR payload version or checksum are wrong");
    };
    // Load into a scratch set first, so a failure leaves the current libraries untouched.
    let mut fresh = Functions {
        restored: true,
        ..Functions::default()
    };
    for code in &codes {
        if let Err(e) = fresh.load(code, false) {
            return e;
        }
    }
    if policy == b"flush" {
        *f = fresh;
    } else {
        let replace = policy == b"replace";
        for name in fresh.libraries.keys() {
            if f.library_key(name).is_some() && !replace {
                return Frame::error(format!("ERR Library {name} already exists"));
            }
        }
        for (name, lib) in &fresh.libraries {
            for fname in lib.functions.keys() {
                if let Some(owner) = f.index.get(&fname.to_ascii_lowercase())
                    && !owner.eq_ignore_ascii_case(name)
                    && !(replace && fresh.library_key(owner).is_some())
                {
                    return Frame::error(format!("ERR Function {fname} already exists"));
                }
            }
        }
        for code in &codes {
            if let Err(e) = f.load(code, replace) {
                return e;
            }
        }
    }
    f.restored = true;
    persist_all(sh, f);
    Frame::ok()
}

fn fcall(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    fcall_generic(s, sh, args, false)
}

fn fcall_ro(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    fcall_generic(s, sh, args, true)
}

fn fcall_generic(s: &mut Session, sh: &Shared, args: &[Arg], ro: bool) -> Frame {
    if super::string_to_i64(&args[2]).is_none() {
        return Frame::error("ERR Bad number of keys provided");
    }
    let (keys, argv) = match super::scripting::split_keys(args) {
        Ok(split) => split,
        Err(e) => return e,
    };
    let Some(me) = sh.arc() else {
        return Frame::error("ERR the service is shutting down");
    };
    let _exclusive = match super::script_lock(s, sh) {
        Ok(guard) => guard,
        Err(busy) => return busy,
    };
    let mut guard = sh.scripting.functions.lock();
    let f = &mut *guard;
    f.restore_from_storage(sh);
    let asked = String::from_utf8_lossy(&args[1]).into_owned();
    let Some(lib) = f
        .index
        .get(&asked.to_ascii_lowercase())
        .and_then(|l| f.libraries.get(l))
    else {
        return Frame::error("ERR Function not found");
    };
    let Some((name, info)) = lib
        .functions
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(&asked))
    else {
        return Frame::error("ERR Function not found");
    };
    let name = name.clone();
    let fflags = info.flags;
    let function = info.function.clone();
    if let Err(e) = super::scripting::check_flags(sh, fflags, ro) {
        return e;
    }
    let Some(engine) = f.engine.as_mut() else {
        return Frame::error("ERR Function not found");
    };
    let Some(mut client) = engine.client.take() else {
        return Frame::error("ERR the script client is in use");
    };
    client.db = s.db;
    client.script_caller = Some(s.id);
    client.user = s.user.clone();
    client.acl_generation = s.acl_generation;
    client.acl_unrestricted = s.acl_unrestricted;
    let ctx = RunCtx {
        shared: me,
        client,
        read_only: ro || fflags & flags::NO_WRITES != 0,
        flags: fflags,
        oom_at_start: super::scripting::over_memory(sh),
        dirty: false,
        counted_error: None,
        track_keys: RunCtx::keys_to_track(s, keys),
    };
    let running = Running {
        client: s.id,
        started: s.command_start.take().unwrap_or_else(Instant::now),
        threshold_ms: super::scripting::busy_threshold_ms(sh),
        eval: false,
        name,
        command: strata_resp::to_owned_args(args),
    };
    let reply = engine.run(&sh.scripting.run, running, &function, keys, argv, ctx);
    s.error_counted = engine.last_error_counted;
    reply
}
