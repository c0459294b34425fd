//! The on-disk cache of precompiled components: keyed by component hash and
//! engine, reused across engines, and a damaged entry is replaced, not trusted.

use warden_runtime::{EngineOptions, WardenEngine};
use warden_tests::guest_bytes;

fn engine(dir: &std::path::Path) -> WardenEngine {
    WardenEngine::new(EngineOptions {
        max_instances: 4,
        cache_dir: Some(dir.to_path_buf()),
        ..EngineOptions::default()
    })
    .unwrap()
}

fn entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn compiled_component_is_cached_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = guest_bytes("hello");
    let first = engine(dir.path()).compile(&bytes).unwrap();
    let files = entries(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&first.sha256) && name.ends_with(".cwasm"),
        "{name}"
    );

    let modified = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    let second = engine(dir.path()).compile(&bytes).unwrap();
    assert_eq!(second.sha256, first.sha256);
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().modified().unwrap(),
        modified,
        "loaded, not rewritten"
    );
}

#[test]
fn a_damaged_cache_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = guest_bytes("hello");
    engine(dir.path()).compile(&bytes).unwrap();
    let file = entries(dir.path()).pop().unwrap();
    std::fs::write(&file, b"not a precompiled component").unwrap();

    engine(dir.path()).compile(&bytes).expect("recompiles");
    let rewritten = std::fs::read(&file).unwrap();
    assert_ne!(rewritten, b"not a precompiled component");
}
