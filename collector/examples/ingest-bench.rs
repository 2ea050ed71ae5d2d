//! Load generator for `make bench`: posts batches of sealed audit records (valid MACs, one hash
//! chain per sender, as one filter VM would send them) to a running collector and reports how
//! many records per second it acknowledged. The collector acknowledges a batch only after its
//! transaction committed, so acknowledged means durable.
//!
//! `ingest-bench --port PORT --key KEYID:HEX --seconds S [--senders N] [--batch B]`
//! prints one JSON line: {"records": .., "seconds": .., "records_per_s": .., "batch": ..}.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hipaa_core::audit::{ChainWriter, MacKey};

#[path = "support/access_record.rs"]
mod access_record;
use access_record::access;

struct Args {
    port: u16,
    key: String,
    seconds: u64,
    senders: usize,
    batch: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        port: 0,
        key: String::new(),
        seconds: 5,
        senders: 4,
        batch: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--port" => a.port = num(&value)? as u16,
            "--key" => a.key = value,
            "--seconds" => a.seconds = num(&value)?,
            "--senders" => a.senders = num(&value)? as usize,
            "--batch" => a.batch = num(&value)? as usize,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.port == 0 || a.key.is_empty() {
        return Err("--port and --key are required".into());
    }
    Ok(a)
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Sends one POST of `body` on a keep-alive connection (the answer is read by [`receive`]).
fn send(conn: &mut BufReader<TcpStream>, body: &[u8]) -> Result<(), String> {
    let head = format!(
        "POST /v1/records HTTP/1.1\r\nHost: audit-collector\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let s = conn.get_mut();
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())
}

/// Reads the answer to the POST sent last; its HTTP status.
fn receive(conn: &mut BufReader<TcpStream>) -> Result<u16, String> {
    let mut status_line = String::new();
    conn.read_line(&mut status_line)
        .map_err(|e| e.to_string())?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("bad status line {status_line:?}"))?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).map_err(|e| e.to_string())?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut rest = vec![0u8; length];
    conn.read_exact(&mut rest).map_err(|e| e.to_string())?;
    Ok(status)
}

fn sender(
    i: usize,
    a: &Args,
    stop: &AtomicBool,
    acked: &AtomicU64,
    started: &AtomicBool,
) -> Result<(), String> {
    let key = MacKey::parse(&a.key).map_err(|e| e.to_string())?;
    let chain_id = format!("{:032x}", (now_millis() as u128) << 16 | i as u128);
    let (mut writer, start) =
        ChainWriter::start(chain_id, key, now_millis()).map_err(|e| e.to_string())?;
    let stream = TcpStream::connect(("127.0.0.1", a.port)).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut conn = BufReader::new(stream);
    let mut pending = vec![serde_json::to_value(&start).map_err(|e| e.to_string())?];
    let mut next = Vec::new();
    let mut n = 0u64;
    let mut seal_into = |batch: &mut Vec<serde_json::Value>| -> Result<(), String> {
        while batch.len() < a.batch {
            let sealed = writer
                .seal(access(now_millis(), n, i))
                .map_err(|e| e.to_string())?;
            batch.push(serde_json::to_value(&sealed).map_err(|e| e.to_string())?);
            n += 1;
        }
        Ok(())
    };
    seal_into(&mut pending)?;
    while !stop.load(Ordering::Relaxed) {
        let body = serde_json::to_vec(&pending).map_err(|e| e.to_string())?;
        send(&mut conn, &body)?;
        // Like a filter whose queue fills while a call is out: the next batch is sealed while
        // the collector stores this one, not after its answer.
        seal_into(&mut next)?;
        match receive(&mut conn)? {
            200 => {
                if started.load(Ordering::Relaxed) {
                    acked.fetch_add(pending.len() as u64, Ordering::Relaxed);
                }
                pending = std::mem::take(&mut next);
            }
            503 => std::thread::sleep(Duration::from_millis(5)),
            other => return Err(format!("collector answered {other}")),
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let a = match args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("ingest-bench: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..a.senders)
        .map(|i| {
            let (a, stop, acked, started) =
                (a.clone(), stop.clone(), acked.clone(), started.clone());
            std::thread::spawn(move || sender(i, &a, &stop, &acked, &started))
        })
        .collect();
    // One second of warm-up, then the measured window.
    std::thread::sleep(Duration::from_secs(1));
    started.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(a.seconds));
    let records = acked.load(Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("ingest-bench: a sender failed: {e}");
                return std::process::ExitCode::FAILURE;
            }
            Err(_) => return std::process::ExitCode::FAILURE,
        }
    }
    println!(
        "{{\"records\": {records}, \"seconds\": {secs:.3}, \"records_per_s\": {:.1}, \"batch\": {}, \"senders\": {}}}",
        records as f64 / secs,
        a.batch,
        a.senders
    );
    std::process::ExitCode::SUCCESS
}
