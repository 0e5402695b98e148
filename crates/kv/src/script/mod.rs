//! Lua scripting: the interpreters behind EVAL and FCALL, the `redis` library scripts call, and the
//! conversions between Redis replies and Lua values.
//!
//! As in Redis there are two Lua 5.1 interpreters: one for EVAL scripts (cached by SHA-1 until SCRIPT
//! FLUSH) and one for FUNCTION libraries. Both are sandboxed the same way: no `os`, `io`, `print`,
//! `loadfile`, `dofile` or `require`; scripts see the globals through a read-only proxy, so creating or
//! replacing a global, or changing a library table (`redis.call = ...`), fails with Redis 7's
//! `Attempt to modify a readonly table`, and reading an unknown global fails with `Script attempted to
//! access nonexistent global variable`.
//!
//! A script runs under the exclusive execution lock (as EXEC does), so nothing interleaves with it.
//! While it runs, [`RunState`] tells other connections what runs and since when: past
//! `busy-reply-threshold` they get `-BUSY` (except the few commands Redis allows), and SCRIPT KILL /
//! FUNCTION KILL set a flag that the interpreter's instruction hook turns into an error — refused once
//! the script has written, as Redis does.

mod bit;
mod convert;
mod fastcall;
pub mod fuzzing;
mod json;
mod msgpack;
pub mod sha1;
mod structlib;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;
use strata_resp::Arg;

use bytes::Bytes;
use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};
use parking_lot::Mutex;
use strata_resp::{Frame, ProtocolVersion};

use crate::Session;

pub use convert::lua_to_frame;

/// The Redis version scripts see as `redis.REDIS_VERSION` (what INFO reports).
const REDIS_VERSION: &str = crate::cmd::REDIS_COMPAT_VERSION;

/// Script flags (`#!lua flags=...` for EVAL, `flags = {...}` in `redis.register_function`).
pub mod flags {
    /// The script never writes.
    pub const NO_WRITES: u32 = 1;
    /// The script may run when used memory is over `maxmemory`.
    pub const ALLOW_OOM: u32 = 2;
    /// The script may run on a stale replica.
    pub const ALLOW_STALE: u32 = 4;
    /// The script may not run in cluster mode.
    pub const NO_CLUSTER: u32 = 8;
    /// The script may touch keys of several slots.
    pub const ALLOW_CROSS_SLOT: u32 = 16;
    /// An EVAL script without a shebang: Redis 6 semantics (may write, declared flags ignored).
    pub const EVAL_COMPAT: u32 = 32;

    /// The flag names, as Redis spells them.
    pub const NAMES: &[(&str, u32)] = &[
        ("no-writes", NO_WRITES),
        ("allow-oom", ALLOW_OOM),
        ("allow-stale", ALLOW_STALE),
        ("no-cluster", NO_CLUSTER),
        ("allow-cross-slot-keys", ALLOW_CROSS_SLOT),
    ];
}

/// How long a script runs on its async worker before the worker's core is handed to another thread.
const MOVE_OFF_AFTER: std::time::Duration = std::time::Duration::from_millis(2);

/// The error a killed script ends with.
const KILLED: &str = "ERR Script killed by user with SCRIPT KILL...";

/// What other connections see of the script that is running.
#[derive(Debug, Clone)]
pub struct Running {
    /// The client running it.
    pub client: u64,
    /// When it started.
    pub started: Instant,
    /// `busy-reply-threshold` when it started, in milliseconds (0: never busy).
    pub threshold_ms: u64,
    /// EVAL (true) or FCALL (false).
    pub eval: bool,
    /// The script's SHA-1 or the function's name.
    pub name: String,
    /// The command that runs it.
    pub command: Vec<Bytes>,
}

/// The running script, shared with other connections and with the interpreter's hook.
#[derive(Debug, Default)]
pub struct RunState {
    active: AtomicBool,
    running: Mutex<Option<Running>>,
    /// Set by SCRIPT KILL / FUNCTION KILL; the hook raises the kill error.
    killed: Arc<AtomicBool>,
    /// Whether the running script has called a write command (it can then only be stopped by
    /// SHUTDOWN NOSAVE).
    wrote: AtomicBool,
}

impl RunState {
    /// Whether any script is running (one atomic load).
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// The running script, if any.
    pub fn running(&self) -> Option<Running> {
        if !self.active() {
            return None;
        }
        self.running.lock().clone()
    }

    /// The `-BUSY` reply for client `me` if a script of another client runs past the threshold.
    pub fn busy_error(&self, me: u64) -> Option<Frame> {
        let r = self.running()?;
        if r.client == me || r.threshold_ms == 0 {
            return None;
        }
        if r.started.elapsed().as_millis() < u128::from(r.threshold_ms) {
            return None;
        }
        Some(Frame::error(if r.eval {
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        } else {
            "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
        }))
    }

    /// Whether a script of another client runs and has not yet reached the threshold (a command of
    /// `me` then waits, as Redis would not read it yet).
    pub fn should_wait(&self, me: u64) -> bool {
        match self.running() {
            Some(r) => {
                r.client != me
                    && (r.threshold_ms == 0
                        || r.started.elapsed().as_millis() < u128::from(r.threshold_ms))
            }
            None => false,
        }
    }

    /// SCRIPT KILL (`eval`) or FUNCTION KILL.
    pub fn kill(&self, eval: bool) -> Frame {
        let Some(r) = self.running() else {
            return Frame::error("NOTBUSY No scripts in execution right now.");
        };
        if self.wrote.load(Ordering::Acquire) {
            return Frame::error(
                "UNKILLABLE Sorry the script already executed write commands against the dataset. \
                 You can either wait the script termination or kill the server in a hard way using \
                 the SHUTDOWN NOSAVE command.",
            );
        }
        if eval && !r.eval {
            return Frame::error(
                "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.",
            );
        }
        if !eval && r.eval {
            return Frame::error(
                "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
            );
        }
        self.killed.store(true, Ordering::Release);
        Frame::ok()
    }

    /// Stops the running script whatever it did (SHUTDOWN NOSAVE).
    pub fn abort(&self) {
        if self.active() {
            self.killed.store(true, Ordering::Release);
        }
    }

    fn begin(&self, running: Running) {
        self.killed.store(false, Ordering::Release);
        self.wrote.store(false, Ordering::Release);
        *self.running.lock() = Some(running);
        self.active.store(true, Ordering::Release);
    }

    fn end(&self) {
        self.active.store(false, Ordering::Release);
        *self.running.lock() = None;
        self.killed.store(false, Ordering::Release);
    }

    pub(crate) fn note_write(&self) {
        self.wrote.store(true, Ordering::Release);
    }
}

/// What a script run needs inside `redis.call`: reached through `fastcall::Current` during the run.
pub(crate) struct RunCtx {
    /// The service (a strong reference for the run).
    pub shared: Arc<crate::Shared>,
    /// The script's own client: its database, its RESP version (`redis.setresp`).
    pub client: Session,
    /// Refuse write commands (EVAL_RO, FCALL_RO, `no-writes`).
    pub read_only: bool,
    /// The script's flags.
    pub flags: u32,
    /// Memory was over `maxmemory` when the script started.
    pub oom_at_start: bool,
    /// The script called a write command.
    pub dirty: bool,
    /// The last error `redis.call`/`pcall` handed the script, already counted in the error statistics.
    pub counted_error: Option<String>,
    /// The script's declared keys, when its caller tracks the keys it reads (CLIENT TRACKING, not
    /// BCAST): as in Redis, the first read command the script runs makes the caller remember them all.
    pub track_keys: Option<Vec<Bytes>>,
}

impl RunCtx {
    /// [`RunCtx::track_keys`] for a script with declared `keys` called by `caller`.
    pub fn keys_to_track(caller: &Session, keys: &[Arg]) -> Option<Vec<Bytes>> {
        (caller.tracking.remembers_reads() && !keys.is_empty())
            .then(|| strata_resp::to_owned_args(keys))
    }
}

/// One Lua interpreter with Redis's sandbox and library.
pub(crate) struct Engine {
    pub lua: Lua,
    /// The real globals (what `redis`, `string`, `KEYS`... live in).
    pub globals: Table,
    /// The metatable of the scripts' environment; its `__index` is the globals, or the load-time API
    /// while a function library loads.
    pub env_meta: Table,
    /// The scripts' environment: an empty read-only proxy of the globals.
    pub env: Table,
    /// The message handler a run's errors go through ([`error_handler`]).
    pub handler: Function,
    /// For functions: what library code sees while it loads (`redis.register_function`, `redis.log`).
    pub load_api: Table,
    /// The script client (taken out into the [`RunCtx`] during a run).
    pub client: Option<Session>,
    /// Runs since the last explicit collection step.
    runs_since_gc: u32,
    /// Whether the last run's error reply was already counted where it happened (Redis's
    /// `ignore_error_stats_update`): the caller then counts only a failed call.
    pub last_error_counted: bool,
    /// What the installed instruction hook watches, if one is installed (see [`Watch`]).
    watch: Option<Arc<Watch>>,
}

/// What the interpreter's instruction hook reads. The hook is installed once and stays (installing a
/// hook per run cost 4% of a short script's time); each run only resets these fields.
struct Watch {
    /// The clock the run's start is measured on.
    base: Instant,
    /// Whether a script is running (the hook does nothing between runs, e.g. while a library loads).
    running: AtomicBool,
    /// When the current run started, in microseconds after `base`.
    started_us: AtomicU64,
    /// Microseconds into the run of the last hand-off of the worker's core (0: none yet).
    last_move_us: AtomicU64,
    /// Whether the run is on a multi-threaded runtime's worker (hand-offs are possible).
    multi_thread: AtomicBool,
    /// The run state's kill flag.
    killed: Arc<AtomicBool>,
    /// Whether the hook was replaced, by the every-instruction one after a kill or by another user of the
    /// interpreter (FUNCTION LOAD's timeout hook): reinstall before the next run.
    replaced: AtomicBool,
}

impl Watch {
    /// The hook, every thousand instructions: hands the worker's core away from a long script and raises
    /// the kill error once killed.
    fn check(watch: &Arc<Watch>, lua: &Lua) -> mlua::Result<VmState> {
        if !watch.running.load(Ordering::Relaxed) {
            return Ok(VmState::Continue);
        }
        let now_us = watch.base.elapsed().as_micros() as u64;
        let ran_us = now_us.saturating_sub(watch.started_us.load(Ordering::Relaxed));
        let move_us = MOVE_OFF_AFTER.as_micros() as u64;
        if watch.multi_thread.load(Ordering::Relaxed)
            && ran_us >= move_us
            && ran_us - watch.last_move_us.load(Ordering::Relaxed) >= move_us
        {
            watch.last_move_us.store(ran_us, Ordering::Relaxed);
            // The core goes to a new thread and this one finishes the script as a blocking thread. But when
            // the empty closure returns before that thread has started, tokio gives the core back (with the
            // tasks queued on it), so this is tried again every MOVE_OFF_AFTER; once the core has gone it
            // costs nothing.
            tokio::task::block_in_place(|| {});
        }
        if !watch.killed.load(Ordering::Acquire) {
            return Ok(VmState::Continue);
        }
        // From now on, every instruction, so a pcall that catches the error cannot keep the script alive
        // (Redis switches to a line hook).
        watch.replaced.store(true, Ordering::Relaxed);
        let again = watch.killed.clone();
        let _ = lua.set_hook(HookTriggers::new().every_nth_instruction(1), move |_, _| {
            if again.load(Ordering::Acquire) {
                Err(mlua::Error::RuntimeError(KILLED.to_owned()))
            } else {
                Ok(VmState::Continue)
            }
        });
        Err(mlua::Error::RuntimeError(KILLED.to_owned()))
    }
}

/// Runs between explicit incremental collection steps (Redis's `LUA_GC_CYCLE_PERIOD`).
const GC_STEP_PERIOD: u32 = 50;

/// A cached EVAL script.
pub(crate) struct CachedScript {
    pub function: Function,
    pub flags: u32,
}

/// The EVAL interpreter and its script cache.
pub(crate) struct EvalState {
    pub engine: Engine,
    pub scripts: HashMap<String, CachedScript>,
}

/// Scripting state of the service.
#[derive(Default)]
pub struct Scripting {
    pub(crate) eval: Mutex<Option<EvalState>>,
    pub(crate) functions: Mutex<crate::cmd::functions::Functions>,
    /// The running script.
    pub run: RunState,
    /// Libraries and functions loaded (FUNCTION STATS answers from this while a function runs).
    pub(crate) function_counts: Mutex<(usize, usize)>,
    /// Scripts in the EVAL cache (INFO memory; readable while a script holds the cache).
    pub(crate) cached: std::sync::atomic::AtomicUsize,
    /// Bytes of cached scripts and loaded libraries (counted as used memory for `maxmemory`).
    pub(crate) script_bytes: std::sync::atomic::AtomicUsize,
    pub(crate) library_bytes: std::sync::atomic::AtomicUsize,
    /// `busy-reply-threshold` as set by CONFIG SET (`None` until then: Redis's default), read by every
    /// script run without the configuration map's lock.
    pub(crate) busy_threshold_ms: std::sync::atomic::AtomicI64,
}

impl Scripting {
    /// Bytes of script and library code held.
    pub fn code_bytes(&self) -> u64 {
        (self.script_bytes.load(Ordering::Relaxed) + self.library_bytes.load(Ordering::Relaxed))
            as u64
    }

    /// Scripts in the EVAL cache.
    pub fn cached_scripts(&self) -> usize {
        self.cached.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Scripting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripting")
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

/// The internal Lua code that builds the sandbox; `...` is (globals, raw_call, sha1hex, log,
/// setresp, handler, missing_global).
const PRELUDE: &str = r#"
local G, raw_call, call, errmsg, sha1hex, log, setresp = ...
local error, type, select, rawget, tostring = error, type, select, rawget, tostring
local orig_setmetatable, orig_rawset, orig_getfenv, orig_pcall = setmetatable, rawset, getfenv, pcall
local orig_loadstring, orig_load = loadstring, load

local protected = orig_setmetatable({}, {__mode = 'k'})

local function readonly_error()
  error('Attempt to modify a readonly table', 2)
end

local function readonly(t)
  local proxy = {}
  local meta_proxy = {}
  protected[meta_proxy] = true
  orig_setmetatable(meta_proxy, {__index = {__index = t}, __newindex = readonly_error, __metatable = false})
  orig_setmetatable(proxy, {__index = t, __newindex = readonly_error, __metatable = meta_proxy})
  protected[proxy] = true
  return proxy
end

local function push_error(msg)
  local code, rest
  if msg:sub(1, 1) == '-' then
    local sp = msg:find(' ', 1, true)
    if sp then
      code = msg:sub(2, sp - 1)
      rest = msg:sub(sp + 1)
    else
      code = 'ERR'
      rest = msg:sub(2)
    end
  else
    code = 'ERR'
    rest = msg
  end
  rest = rest:gsub('^[\r\n]+', ''):gsub('[\r\n]+$', '')
  return {err = code .. ' ' .. rest}
end

local redis = {}
redis.call = call
redis.pcall = raw_call
redis.sha1hex = function(...)
  if select('#', ...) ~= 1 then error(push_error('wrong number of arguments'), 0) end
  return sha1hex((...))
end
redis.error_reply = function(...)
  local msg = ...
  if select('#', ...) ~= 1 or type(msg) ~= 'string' then
    return push_error('wrong number or type of arguments')
  end
  if msg:sub(1, 1) ~= '-' then msg = '-' .. msg end
  return push_error(msg)
end
redis.status_reply = function(...)
  local msg = ...
  if select('#', ...) ~= 1 or type(msg) ~= 'string' then
    return push_error('wrong number or type of arguments')
  end
  return {ok = msg}
end
local function redis_log(...)
  local n = select('#', ...)
  if n < 2 then error(push_error('redis.log() requires two arguments or more.'), 0) end
  local level = ...
  if type(level) ~= 'number' then error(push_error('First argument must be a number (log level).'), 0) end
  if level < 0 or level > 3 then error(push_error('Invalid debug level.'), 0) end
  local parts = {}
  for i = 2, n do
    local v = select(i, ...)
    if type(v) == 'string' or type(v) == 'number' then parts[#parts + 1] = tostring(v) end
  end
  log(level, table.concat(parts, ' '))
end
redis.log = redis_log
redis.setresp = function(...)
  if select('#', ...) ~= 1 then error(push_error('redis.setresp() requires one argument.'), 0) end
  local v = ...
  if v ~= 2 and v ~= 3 then error(push_error('RESP version must be 2 or 3.'), 0) end
  setresp(v)
end
redis.set_repl = function(...)
  if select('#', ...) ~= 1 then error(push_error('redis.set_repl() requires two arguments.'), 0) end
  local v = ...
  if type(v) ~= 'number' or v < 0 or v > 3 then
    error(push_error('Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.'), 0)
  end
end
redis.replicate_commands = function() return true end
redis.breakpoint = function() return false end
redis.debug = function() end
redis.acl_check_cmd = function(...)
  if select('#', ...) == 0 then
    error(push_error('Please specify at least one argument for this redis lib call'), 0)
  end
  local known = raw_call('command', 'info', (...))
  if type(known) ~= 'table' or type(known[1]) ~= 'table' then
    error(push_error('Invalid command passed to redis.acl_check_cmd()'), 0)
  end
  return true
end
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3

-- pcall as Redis 7 has it: an error table with an `err` field is caught as its message.
local function fix_pcall(ok, ...)
  if ok then return ok, ... end
  local e = ...
  if type(e) == 'table' and type(rawget(e, 'err')) == 'string' then e = rawget(e, 'err') end
  if type(e) == 'userdata' then e = errmsg(e) end
  return false, e
end
G.pcall = function(...) return fix_pcall(orig_pcall(...)) end
G.setmetatable = function(t, m)
  if protected[t] then error('Attempt to modify a readonly table', 2) end
  return orig_setmetatable(t, m)
end
G.rawset = function(t, k, v)
  if protected[t] then error('Attempt to modify a readonly table', 2) end
  return orig_rawset(t, k, v)
end
G.loadstring = function(s, name)
  if type(s) == 'string' and s:sub(1, 1) == '\27' then return nil, 'binary chunks are not allowed' end
  local f, e = orig_loadstring(s, name)
  if f then setfenv(f, G._G) end
  return f, e
end
G.load = function(fn, name)
  local f, e = orig_load(function()
    local piece = fn()
    if type(piece) == 'string' and piece:sub(1, 1) == '\27' then error('binary chunks are not allowed') end
    return piece
  end, name)
  if f then setfenv(f, G._G) end
  return f, e
end
G.print, G.dofile, G.loadfile, G.require, G.module, G.package, G.os, G.io = nil

-- unpack as Redis's patched Lua 5.1 has it. The stock one computes the element count `j - i + 1` in a
-- C int, so a range like (-2, 2^31-1) overflows it, and the compiler, knowing i <= j, drops the check
-- after it: the process crashes. Here such a range is refused first, with the stock message, and the
-- stock function runs only on ranges it handles. Bounds convert as lbaselib converts them (truncated
-- towards zero, then to 32 bits); errors are raised at the caller's line, as luaL_error raises them
-- (a caller that tail-calls unpack has no line left to name).
do
  local unpack, floor, ceil, select, tonumber, type = unpack, math.floor, math.ceil, select, tonumber, type
  local function c_int(d)
    if d ~= d or d >= 2^63 or d < -2^63 then return 0 end
    d = d >= 0 and floor(d) or ceil(d)
    d = d % 4294967296
    if d >= 2147483648 then d = d - 4294967296 end
    return d
  end
  G.unpack = function(...)
    local t, i, j = ...
    if type(t) ~= 'table' then
      local got = select('#', ...) == 0 and 'no value' or type(t)
      error("bad argument #1 to 'unpack' (table expected, got " .. got .. ")", 2)
    end
    local first, last = 1, #t
    if i ~= nil then
      first = tonumber(i)
      if not first then error("bad argument #2 to 'unpack' (number expected, got " .. type(i) .. ")", 2) end
    end
    if j ~= nil then
      last = tonumber(j)
      if not last then error("bad argument #3 to 'unpack' (number expected, got " .. type(j) .. ")", 2) end
    end
    first, last = c_int(first), c_int(last)
    -- lua_checkstack's bound: the arguments and the results within LUAI_MAXCSTACK (8000) slots.
    if first <= last and last - first + 1 > 8000 - select('#', ...) then
      error('too many results to unpack', 2)
    end
    return unpack(...)
  end
end

for _, name in ipairs({'string', 'table', 'math', 'coroutine', 'cjson', 'bit', 'cmsgpack', 'struct'}) do
  if rawget(G, name) then orig_rawset(G, name, readonly(rawget(G, name))) end
end
G.redis = readonly(redis)

-- Redis makes the metatables of the basic types read-only; of those only strings have one (its __index
-- is the string library). Scripts get a read-only view of it, so `getmetatable('').__index = f` fails
-- as it does there instead of changing every string method of later scripts.
do
  local getmetatable = getmetatable
  local string_meta = readonly({__index = G.string})
  G.getmetatable = function(...)
    if type((...)) == 'string' then return string_meta end
    return (getmetatable(...))
  end
end

-- The scripts' environment: reads go to the globals, writes are refused.
local env = {}
local env_meta = {__index = G, __newindex = readonly_error}
env_meta.__metatable = readonly(env_meta)
orig_setmetatable(env, env_meta)
protected[env] = true
G._G = env
G.getfenv = function(...)
  local e = orig_getfenv(...)
  if e == G then return env end
  return e
end
orig_setmetatable(G, {__index = function(_, k)
  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 0)
end})

-- What library code sees while FUNCTION LOAD runs it.
local load_redis = {log = redis_log, LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
  REDIS_VERSION = redis.REDIS_VERSION, REDIS_VERSION_NUM = redis.REDIS_VERSION_NUM}
local function missing(_, k)
  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 0)
end
orig_setmetatable(load_redis, {__index = missing})
local load_api = {}
orig_setmetatable(load_api, {__index = missing})

return env, env_meta, load_api, load_redis, readonly, redis
"#;

impl Engine {
    /// A new interpreter with Redis's libraries and sandbox. `functions` adds
    /// `redis.register_function` (for FUNCTION LOAD).
    pub fn new(functions: bool) -> mlua::Result<Engine> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            LuaOptions::default(),
        )?;
        let globals = lua.globals();
        globals.raw_set("cjson", json::library(&lua)?)?;
        globals.raw_set("bit", bit::library(&lua)?)?;
        globals.raw_set("cmsgpack", msgpack::library(&lua)?)?;
        globals.raw_set("struct", structlib::library(&lua)?)?;
        // Native functions rather than a Lua wrapper: `return redis.call(...)` is then no tail call that
        // would hide the script's line from the error.
        let (pcall, call) = fastcall::functions(&lua)?;
        let errmsg = lua.create_function(|_, v: Value| {
            Ok(match v {
                Value::Error(e) => root_message(&e),
                other => convert::value_text(&other),
            })
        })?;
        let sha1hex = lua.create_function(|lua, s: mlua::LuaString| {
            lua.create_string(sha1::sha1_hex(&s.as_bytes()))
        })?;
        let log = lua.create_function(|_, (level, msg): (i64, mlua::LuaString)| {
            let msg = msg.to_string_lossy();
            match level {
                0 => tracing::debug!(target: "strata_kv::script", "{msg}"),
                1 | 2 => tracing::info!(target: "strata_kv::script", "{msg}"),
                _ => tracing::warn!(target: "strata_kv::script", "{msg}"),
            }
            Ok(())
        })?;
        let setresp = lua.create_function(|_, v: i64| {
            fastcall::with_current(|ctx| {
                ctx.client.protocol = if v == 3 {
                    ProtocolVersion::Resp3
                } else {
                    ProtocolVersion::Resp2
                };
            });
            Ok(())
        })?;
        let prelude: Function = lua.load(PRELUDE).set_name("=redis").into_function()?;
        // The version fields must exist before the prelude freezes the `redis` table: set them on the
        // real table through the returned reference.
        let (env, env_meta, load_api, load_redis, readonly, redis): (
            Table,
            Table,
            Table,
            Table,
            Function,
            Table,
        ) = prelude.call((globals.clone(), pcall, call, errmsg, sha1hex, log, setresp))?;
        for t in [&redis, &load_redis] {
            t.raw_set("REDIS_VERSION", REDIS_VERSION)?;
            t.raw_set("REDIS_VERSION_NUM", version_num())?;
        }
        if functions {
            load_redis.raw_set(
                "register_function",
                lua.create_function(crate::cmd::functions::register_function)?,
            )?;
        }
        let load_redis_ro: Table = readonly.call(load_redis)?;
        load_api.raw_set("redis", load_redis_ro)?;
        let handler = lua.create_function(error_handler)?;
        let client = script_client();
        Ok(Engine {
            lua,
            globals,
            env_meta,
            env,
            handler,
            load_api,
            client: Some(client),
            runs_since_gc: 0,
            last_error_counted: false,
            watch: None,
        })
    }

    /// Tells the engine that its instruction hook was replaced or removed by someone else (FUNCTION LOAD
    /// runs library code under a hook of its own): the watchdog is installed again before the next run.
    pub(crate) fn hook_taken(&self) {
        if let Some(w) = &self.watch {
            w.replaced.store(true, Ordering::Relaxed);
        }
    }

    /// Arms the instruction hook for a run under `state` (installing it when needed), or removes it when
    /// the run has no busy threshold.
    fn arm_watch(
        &mut self,
        state: &RunState,
        threshold_ms: u64,
        started: Instant,
        multi_thread: bool,
    ) {
        if threshold_ms == 0 {
            if self.watch.take().is_some() {
                self.lua.remove_hook();
            }
            return;
        }
        let fresh = self.watch.as_ref().is_none_or(|w| {
            w.replaced.load(Ordering::Relaxed) || !Arc::ptr_eq(&w.killed, &state.killed)
        });
        if fresh {
            let watch = Arc::new(Watch {
                base: Instant::now(),
                running: AtomicBool::new(false),
                started_us: AtomicU64::new(0),
                last_move_us: AtomicU64::new(0),
                multi_thread: AtomicBool::new(false),
                killed: state.killed.clone(),
                replaced: AtomicBool::new(false),
            });
            let hooked = watch.clone();
            let _ = self.lua.set_hook(
                HookTriggers::new().every_nth_instruction(1000),
                move |lua, _| Watch::check(&hooked, lua),
            );
            self.watch = Some(watch);
        }
        if let Some(w) = &self.watch {
            w.started_us.store(
                started.saturating_duration_since(w.base).as_micros() as u64,
                Ordering::Relaxed,
            );
            w.last_move_us.store(0, Ordering::Relaxed);
            w.multi_thread.store(multi_thread, Ordering::Relaxed);
            w.running.store(true, Ordering::Release);
        }
    }

    /// Compiles user code named `name` (`@user_script`, `@user_function`) in the sandboxed environment.
    pub fn compile(&self, code: &[u8], name: &str) -> Result<Function, String> {
        self.lua
            .load(code)
            .set_name(name)
            .set_mode(mlua::chunk::ChunkMode::Text)
            .set_environment(self.env.clone())
            .into_function()
            .map_err(|e| match e {
                mlua::Error::SyntaxError { message, .. } => message,
                other => other.to_string(),
            })
    }

    /// Runs `f(keys, args)` (for EVAL the arguments are ignored: KEYS and ARGV are globals) as script
    /// `name`, with `ctx` available to `redis.call`; returns the reply and the context back.
    pub fn run(
        &mut self,
        state: &RunState,
        running: Running,
        f: &Function,
        keys: &[Arg],
        args: &[Arg],
        mut ctx: RunCtx,
    ) -> Frame {
        let eval = running.eval;
        let name = running.name.clone();
        ctx.client.protocol = ProtocolVersion::Resp2;
        let threshold = running.threshold_ms;
        let started = running.started;
        let eval_script = running.eval;
        state.begin(running);
        // A script starts on the worker that received it (see below); one that runs past MOVE_OFF_AFTER
        // hands the worker's core to another thread from its hook, so the tasks queued behind it run.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        self.arm_watch(state, threshold, started, multi_thread);
        let lua = &self.lua;
        let current = fastcall::Current::enter(&mut ctx);
        let call = || fastcall::call_protected(lua, &self.handler, f, keys, args, eval);
        // A script runs on the worker that received it, holding the exclusive lock: handing the worker's core
        // to another thread for every call (`block_in_place` before the call) cost a thread wake-up per
        // script and measured 4x slower under `strata-bench kv` EVALSHA. The tasks queued on this worker
        // (SCRIPT KILL, the `-BUSY` replies) must not wait for a long script, though: the hook above moves
        // the core away once the script has run for MOVE_OFF_AFTER. Without the hook (busy-reply-threshold
        // 0) the script is moved off before it starts, as before. So is a function (FCALL): other commands
        // wait on the function library's lock while one runs, so it must not hold a worker either.
        let result = if multi_thread && (threshold == 0 || !eval_script) {
            tokio::task::block_in_place(call)
        } else {
            call()
        };
        if let Some(w) = &self.watch {
            w.running.store(false, Ordering::Release);
        }
        drop(current);
        state.end();
        self.last_error_counted = false;
        let resp3 = ctx.client.protocol == ProtocolVersion::Resp3;
        let counted_error = ctx.counted_error.take();
        self.client = Some(ctx.client);
        let mut error_counted = false;
        let reply = match result {
            Ok((ok, value)) => {
                if let Value::Table(t) = &value {
                    error_counted = if ok {
                        // A `redis.pcall` error table the script returned as it was.
                        t.raw_get::<bool>(IGNORE_ERROR_STATS).unwrap_or(false)
                    } else {
                        // The error `redis.call` raised, not one the script raised itself.
                        t.raw_get::<mlua::LuaString>("err")
                            .is_ok_and(|m| counted_error.as_deref() == Some(&*m.to_string_lossy()))
                    };
                }
                if ok {
                    lua_to_frame(&value, resp3, 0)
                } else {
                    failure_reply(&value, &name)
                }
            }
            Err(e) => Frame::error(format!(
                "ERR Error running script {name}, {}",
                root_message(&e)
            )),
        };
        self.last_error_counted = error_counted && matches!(reply, Frame::Error(_));
        // A little incremental collection now and then keeps full cycles (and their latency) rare; a step
        // after every run cost 5% of a short script's time.
        self.runs_since_gc += 1;
        if self.runs_since_gc >= GC_STEP_PERIOD {
            self.runs_since_gc = 0;
            let _ = lua.gc_step();
        }
        reply
    }
}

/// `REDIS_VERSION_NUM`: 0x00MMmmpp.
fn version_num() -> i64 {
    let mut parts = REDIS_VERSION
        .split('.')
        .map(|p| p.parse::<i64>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    let patch = parts.next().unwrap_or(0);
    (major << 16) | (minor << 8) | patch
}

/// The client id of the scripts' own client (real clients count from 1).
pub const SCRIPT_CLIENT_ID: u64 = 0;

/// The session the script's commands run in (its own database and RESP version, like Redis's Lua
/// client).
fn script_client() -> Session {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (handle, _messages) =
        crate::clients::ClientHandle::new(SCRIPT_CLIENT_ID, addr, None, Default::default());
    // Each run takes its caller's user; until then, the default user's rights.
    let mut s = Session::new(handle, true, crate::acl::Acl::new().default_user(), 0);
    s.authenticated = true;
    // Blocking commands never wait inside a script: they answer as if timed out.
    s.in_exec = true;
    s
}

/// The reply for a script that raised an error: `{err=..., source=..., line=...}` from the handler.
fn failure_reply(value: &Value, name: &str) -> Frame {
    match value {
        Value::Table(t) => {
            let msg: Option<mlua::LuaString> = t.raw_get("err").ok();
            let msg = msg.map_or_else(|| "ERR unknown error".to_owned(), |m| m.to_string_lossy());
            let source: Option<String> = t.raw_get("source").ok();
            let line: Option<i64> = t.raw_get("line").ok();
            let text = match (source, line) {
                (Some(source), Some(line)) => format!("{msg} script: {name}, on {source}:{line}."),
                _ => msg,
            };
            Frame::error(convert::error_text(&text))
        }
        other => Frame::error(format!(
            "ERR Error running script {name}, {}",
            convert::value_text(other)
        )),
    }
}

/// The innermost message of an mlua error (callback errors wrap the one raised).
pub(crate) fn root_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => root_message(cause),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The message handler of a run (see [`fastcall::call_protected`]): turns any error into Redis's error table, with the source and line of the
/// user code that raised it.
fn error_handler(lua: &Lua, err: Value) -> mlua::Result<Table> {
    let t = match err {
        Value::Table(t) => t,
        Value::Error(e) => {
            let t = lua.create_table()?;
            let m = root_message(&e);
            let m = if m.starts_with("ERR ") || m.contains(' ') && is_error_code(&m) {
                m
            } else {
                format!("ERR {m}")
            };
            t.raw_set("err", m)?;
            t
        }
        other => {
            let t = lua.create_table()?;
            let mut text = b"ERR ".to_vec();
            match &other {
                Value::String(s) => text.extend_from_slice(&s.as_bytes()),
                v => text.extend_from_slice(convert::value_text(v).as_bytes()),
            }
            t.raw_set("err", lua.create_string(&text)?)?;
            t
        }
    };
    // Level 0 is this handler; find the first frame of user code above it.
    for level in 1..64 {
        let found = lua.inspect_stack(level, |d| {
            let src = d.source();
            let source = src.source.as_deref().unwrap_or("").to_owned();
            (src.what, source, d.current_line())
        });
        let Some((what, source, line)) = found else {
            break;
        };
        if what == "C" || source.starts_with('=') {
            continue;
        }
        t.raw_set("source", source)?;
        if let Some(line) = line {
            t.raw_set("line", line as i64)?;
        }
        break;
    }
    Ok(t)
}

/// Whether `m` starts with an upper-case error code (`BUSY ...`, `OOM ...`).
fn is_error_code(m: &str) -> bool {
    let code = m.split(' ').next().unwrap_or("");
    !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// The field Redis sets on the error tables of `redis.call`/`redis.pcall` whose error it already counted.
const IGNORE_ERROR_STATS: &str = "ignore_error_stats_update";

/// Parses an EVAL script's shebang: its flags and how many bytes of the first line to skip (the line
/// feed stays, so line numbers do not move).
pub fn parse_shebang(body: &[u8]) -> Result<(u32, usize), String> {
    if !body.starts_with(b"#!") {
        return Ok((flags::EVAL_COMPAT, 0));
    }
    let Some(end) = body.iter().position(|&b| b == b'\n') else {
        return Err("ERR Invalid script shebang".to_owned());
    };
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split_ascii_whitespace();
    let engine = parts.next().unwrap_or("");
    if engine != "#!lua" {
        return Err(format!("ERR Unexpected engine in script shebang: {engine}"));
    }
    let mut script_flags = 0;
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {part}"));
        };
        for flag in list.split(',') {
            if flag.is_empty() {
                continue;
            }
            match flags::NAMES.iter().find(|(n, _)| *n == flag) {
                Some((_, bit)) => script_flags |= bit,
                None => return Err(format!("ERR Unexpected flag in script shebang: {flag}")),
            }
        }
    }
    Ok((script_flags, end))
}
