//! In-process ingest, for profilers: what `POST /v1/records` costs the collector per record
//! (parse the body, prepare, one transaction per group of batches), without HTTP or a load
//! generator competing for the core. Deterministic under `valgrind --tool=callgrind`:
//!
//! ```text
//! valgrind --tool=callgrind --toggle-collect='*ingest_profile::measured*' \
//!     target/release/examples/ingest-profile --db sqlite:/tmp/p.db --groups 20
//! ```
//!
//! `ingest-profile --db URL [--groups G] [--senders S] [--batch B]`: G transactions, each of S
//! batches of B sealed records (S chains), as the server's writer groups them. Prints records
//! stored and the process CPU time per record.

use std::time::Duration;

use hipaa_collector::ingest::{ingest_prepared, prepare, system_clock, Collector};
use hipaa_collector::keys::EncryptionKey;
use hipaa_collector::open_store;
use hipaa_core::audit::{ChainWriter, MacKey, MacKeyRing};

#[path = "support/access_record.rs"]
mod access_record;
use access_record::access;

const KEY: &str = "bench:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn cpu_time() -> Duration {
    // utime + stime of this process, from /proc (Linux); zero elsewhere.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // CLK_TCK is 100 on Linux.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

#[inline(never)]
fn measured(
    store: &mut dyn hipaa_collector::Store,
    collector: &Collector,
    bodies: &[Vec<Vec<u8>>],
) -> Result<u64, String> {
    let mut stored = 0;
    for group in bodies {
        let batches: Vec<_> = group
            .iter()
            .map(|body| {
                let batch: Vec<serde_json::Value> =
                    serde_json::from_slice(body).unwrap_or_default();
                prepare(collector, batch)
            })
            .collect();
        let sums = ingest_prepared(store, collector, batches).map_err(|e| e.to_string())?;
        stored += sums.iter().map(|s| s.accepted + s.flagged).sum::<u64>();
    }
    Ok(stored)
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingest-profile: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut db = String::new();
    let (mut groups, mut senders, mut batch) = (20usize, 4usize, 200usize);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        let num = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--db" => db = value.clone(),
            "--groups" => groups = num()?,
            "--senders" => senders = num()?,
            "--batch" => batch = num()?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if db.is_empty() {
        return Err("usage: ingest-profile --db URL [--groups G] [--senders S] [--batch B]".into());
    }
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let collector = Collector {
        mac_keys: MacKeyRing::parse(KEY).map_err(|x| e(&x))?,
        encryption: EncryptionKey::parse(&[7u8; 32]).map_err(|x| e(&x))?,
        clock: system_clock(),
    };
    // The request bodies, as the senders would post them.
    let mut bodies: Vec<Vec<Vec<u8>>> = vec![Vec::new(); groups];
    let mut n = 0u64;
    for i in 0..senders {
        let key = MacKey::parse(KEY).map_err(|x| e(&x))?;
        let (mut w, start) =
            ChainWriter::start(format!("chain-{i}"), key, 1_795_451_828_123).map_err(|x| e(&x))?;
        let mut pending = vec![serde_json::to_value(start).map_err(|x| e(&x))?];
        for group in bodies.iter_mut() {
            while pending.len() < batch {
                let sealed = w.seal(access(1_795_451_828_123, n, i)).map_err(|x| e(&x))?;
                pending.push(serde_json::to_value(sealed).map_err(|x| e(&x))?);
                n += 1;
            }
            group.push(serde_json::to_vec(&pending).map_err(|x| e(&x))?);
            pending.clear();
        }
    }
    let mut store = open_store(&db).map_err(|x| e(&x))?;
    let before = cpu_time();
    let stored = measured(store.as_mut(), &collector, &bodies)?;
    let cpu = cpu_time().saturating_sub(before);
    println!(
        "{{\"records\": {stored}, \"cpu_s\": {:.3}, \"cpu_us_per_record\": {:.1}}}",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / stored.max(1) as f64
    );
    Ok(())
}
