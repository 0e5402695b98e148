//! `strata storage check|stats` against a directory written by the engine, intact and damaged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn strata() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strata"))
}

fn write_some_data(dir: &std::path::Path) {
    let db = strata_storage::Db::open(dir, strata_storage::Options::default()).unwrap();
    let tree = db.tree("users").unwrap();
    for i in 0..1000u32 {
        tree.put(format!("user:{i:05}").as_bytes(), &[b'x'; 100])
            .unwrap();
    }
    let log = db.log("events").unwrap();
    for i in 0..100u32 {
        log.append(format!("event {i}").as_bytes()).unwrap();
    }
}

#[test]
fn check_and_stats_read_a_node_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = tmp.path().join("storage");
    write_some_data(&storage);

    let out = strata()
        .args(["storage", "check"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("every checksum verified"), "{stdout}");

    let out = strata()
        .args(["storage", "stats"])
        .arg(&storage)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("users"), "{stdout}");
    assert!(stdout.contains("log events"), "{stdout}");
}

#[test]
fn check_names_the_damaged_file() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = tmp.path().join("storage");
    write_some_data(&storage);
    let wal = std::fs::read_dir(&storage)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("wal-")
                && std::fs::metadata(p).unwrap().len() > 1000
        })
        .expect("a WAL segment with data");
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&wal, bytes).unwrap();

    let out = strata()
        .args(["storage", "check"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&wal.file_name().unwrap().to_string_lossy().into_owned()),
        "{stderr}"
    );
}
