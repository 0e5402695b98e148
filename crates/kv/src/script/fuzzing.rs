//! Entry points for the fuzz targets (`fuzz/fuzz_targets/script_decoders.rs`): the decoders scripts reach
//! with data they did not write. Errors are expected; a crash, a hang or a stack overflow is the bug.

use std::cell::RefCell;

use mlua::{Function, Lua, LuaOptions, MultiValue, StdLib, Table, Value};

thread_local! {
    /// One interpreter with the two libraries, reused across inputs.
    static LIBS: RefCell<Option<(Lua, Table, Table)>> = const { RefCell::new(None) };
}

/// `data` through `cjson.decode`, `cmsgpack.unpack` and `cmsgpack.unpack_one`; what decodes is encoded
/// again with the other library's encoder and decoded once more.
pub fn decode(data: &[u8]) {
    LIBS.with(|libs| {
        let mut libs = libs.borrow_mut();
        if libs.is_none() {
            let lua = Lua::new_with(
                StdLib::TABLE | StdLib::STRING | StdLib::MATH,
                LuaOptions::default(),
            )
            .expect("a Lua state");
            let cjson = super::json::library(&lua).expect("cjson");
            let cmsgpack = super::msgpack::library(&lua).expect("cmsgpack");
            *libs = Some((lua, cjson, cmsgpack));
        }
        let Some((lua, cjson, cmsgpack)) = libs.as_ref() else {
            return;
        };
        let Ok(input) = lua.create_string(data) else {
            return;
        };
        let call = |lib: &Table, name: &str, args: MultiValue| -> Option<MultiValue> {
            let f: Function = lib.get(name).ok()?;
            f.call::<MultiValue>(args).ok()
        };
        let one = |v: Value| MultiValue::from_iter([v]);
        if let Some(decoded) = call(cjson, "decode", one(Value::String(input.clone())))
            && let Some(packed) = call(cmsgpack, "pack", decoded)
            && let Some(Value::String(packed)) = packed.into_iter().next()
        {
            let _ = call(cmsgpack, "unpack", one(Value::String(packed)));
        }
        if let Some(values) = call(cmsgpack, "unpack", one(Value::String(input.clone()))) {
            for v in values {
                if let Some(Value::String(json)) =
                    call(cjson, "encode", one(v)).and_then(|r| r.into_iter().next())
                {
                    let _ = call(cjson, "decode", one(Value::String(json)));
                }
            }
        }
        let _ = call(
            cmsgpack,
            "unpack_one",
            MultiValue::from_iter([Value::String(input), Value::Integer(0)]),
        );
        // Keep one fuzz run's garbage from growing into the next.
        let _ = lua.gc_collect();
    });
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn hostile_inputs_decode_to_errors() {
        let mut deep_array = vec![0x91u8; 100_000];
        deep_array.push(1);
        let mut deep_map = [0x81u8, 0x01].repeat(100_000);
        deep_map.push(1);
        let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let inputs: Vec<Vec<u8>> = [
            &deep_array[..],
            &deep_map[..],
            deep_json.as_bytes(),
            b"\xdd\xff\xff\xff\xff",
            b"\xdb\xff\xff\xff\xff",
            b"{\"a\":[1,2,{\"b\":null}],\"c\":\"\\u00e9\"}",
            b"[1e999, -0, 1.5]",
            b"",
        ]
        .iter()
        .map(|i| i.to_vec())
        .collect();
        // The stack scripts run with (the server's runtime threads have 8 MiB).
        std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(move || inputs.iter().for_each(|i| decode(i)))
            .expect("a thread")
            .join()
            .expect("no panic");
    }
}
