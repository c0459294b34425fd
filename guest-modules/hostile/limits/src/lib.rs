//! Breaks one sandbox limit, chosen by `[config] attack`. Used by the limit tests.

use std::hint::black_box;

use warden_sdk::{Task, config};

mod wasi {
    wit_bindgen::generate!({
        path: "../../../wit",
        inline: "package warden:hostile;
                 world clocks { import wasi:clocks/monotonic-clock@0.2.12; }",
        generate_all,
    });
}

struct Limits;

impl Task for Limits {
    fn run() -> Result<(), String> {
        match config::require("attack")?.as_str() {
            "spin" => spin(),
            "grow" => grow(),
            "recurse" => Ok(black_box(recurse(black_box(1))) as u8).map(|_| ()),
            "recurse-shadow" => Ok(black_box(recurse_shadow(black_box(1))) as u8).map(|_| ()),
            "handles" => handles(),
            "huge-output" => {
                let mib: usize = config::require("mib")?
                    .parse()
                    .map_err(|e| format!("mib: {e}"))?;
                Err("x".repeat(mib << 20))
            }
            "trap" => panic!("guest panicked on purpose"),
            other => Err(format!("unknown attack {other}")),
        }
    }
}

fn spin() -> Result<(), String> {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn grow() -> Result<(), String> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // 1 MiB at a time, touched so it is really allocated.
        hoard.push(black_box(vec![1u8; 1 << 20]));
    }
}

// Unbounded on purpose, with locals only in wasm registers: overflows the
// engine's native stack, which the host must turn into a trap.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    black_box(recurse(black_box(depth + 1))).wrapping_add(depth)
}

// Unbounded with a big frame in linear memory: overflows the guest's own
// shadow stack (an out-of-bounds access below address 0).
#[allow(unconditional_recursion)]
fn recurse_shadow(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    black_box(recurse_shadow(depth + 1)) + frame[(depth % 64) as usize]
}

fn handles() -> Result<(), String> {
    // Every pollable is a host resource; leak them until the host says stop.
    loop {
        std::mem::forget(wasi::wasi::clocks::monotonic_clock::subscribe_duration(
            1_000_000_000,
        ));
    }
}

warden_sdk::export_task!(Limits);
