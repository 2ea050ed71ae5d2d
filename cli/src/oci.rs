//! A `.wasm` module as an OCI image, in the layout Istio's WasmPlugin pulls (`oci://`).
//!
//! Istio (pkg/wasm/imagefetcher.go) accepts two image variants of the Wasm image spec:
//! - *compat*: a standard OCI (or Docker) image whose one layer is a gzipped tar holding
//!   `plugin.wasm`, with a standard image config;
//! - *oci*: custom media types (`application/vnd.module.wasm.content.layer.v1+wasm`), but Istio
//!   requires exactly two layers there, and tools disagree on what the second one is.
//!
//! We write the *compat* variant: every registry and every tool (`oras`, `skopeo`, `crane`)
//! handles it as an ordinary image, and Istio tries it first. Everything is deterministic (no
//! timestamps, fixed tar header, gzip without a name or time), so the image digest is a pure
//! function of the module's bytes: `policy render` computes the digest the WasmPlugin pins
//! (Istio compares `sha256` with the image's manifest digest for `oci://` URLs) without a
//! registry, and `hipaa-mesh package` writes the very same image.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The file name Istio looks for inside the layer.
pub const PLUGIN_FILE: &str = "plugin.wasm";

/// One image: its blobs and the digests that identify it.
pub struct Image {
    /// (hex sha256, bytes) of the config, the layer and the manifest.
    pub blobs: Vec<(String, Vec<u8>)>,
    pub manifest_digest: String,
    pub manifest_size: usize,
    /// sha256 of the `.wasm` itself.
    pub wasm_sha256: String,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The image for one module. `title` names the module (e.g. `hipaa_authn.wasm`).
pub fn image(wasm: &[u8], title: &str, version: &str) -> Image {
    let tar = tar_one_file(PLUGIN_FILE, wasm);
    let layer = gzip_stored(&tar);
    let layer_digest = sha256_hex(&layer);
    let config = canonical_json(&json!({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&tar))]}
    }))
    .into_bytes();
    let config_digest = sha256_hex(&config);
    let manifest = canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": format!("sha256:{config_digest}"),
            "size": config.len()
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": format!("sha256:{layer_digest}"),
            "size": layer.len()
        }],
        "annotations": {
            "module.wasm.image/variant": "compat",
            "org.opencontainers.image.title": title,
            "org.opencontainers.image.version": version
        }
    }))
    .into_bytes();
    let manifest_digest = sha256_hex(&manifest);
    Image {
        wasm_sha256: sha256_hex(wasm),
        manifest_size: manifest.len(),
        blobs: vec![
            (config_digest, config),
            (layer_digest, layer),
            (manifest_digest.clone(), manifest),
        ],
        manifest_digest,
    }
}

/// Write `image` as an OCI image layout directory (`oci-layout`, `index.json`, `blobs/`),
/// tagged `tag`: `skopeo copy oci:DIR:TAG docker://...` and `oras cp --from-oci-layout` read it.
pub fn write_layout(image: &Image, dir: &Path, tag: &str) -> Result<(), String> {
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs)
        .map_err(|e| format!("cannot create {}: {e}", blobs.display()))?;
    for (digest, bytes) in &image.blobs {
        write(&blobs.join(digest), bytes)?;
    }
    write(
        &dir.join("oci-layout"),
        canonical_json(&json!({"imageLayoutVersion": "1.0.0"})).as_bytes(),
    )?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": format!("sha256:{}", image.manifest_digest),
            "size": image.manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }]
    });
    write(&dir.join("index.json"), canonical_json(&index).as_bytes())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// JSON with object keys sorted at every level, so digests never depend on map ordering.
pub fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        Value::String(k.clone()),
                        canonical_json(&map[k.as_str()])
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(canonical_json)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

/// A ustar archive with one regular file: fixed mode, owner and time.
fn tar_one_file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, bytes: &[u8]| {
        h[at..at + bytes.len()].copy_from_slice(bytes);
    };
    put(&mut header, 0, name.as_bytes());
    put(&mut header, 100, b"0000644\0");
    put(&mut header, 108, b"0000000\0");
    put(&mut header, 116, b"0000000\0");
    put(
        &mut header,
        124,
        format!("{:011o}\0", data.len()).as_bytes(),
    );
    put(&mut header, 136, b"00000000000\0");
    header[156] = b'0';
    put(&mut header, 257, b"ustar\0");
    put(&mut header, 263, b"00");
    // The checksum is computed with its own field as spaces.
    put(&mut header, 148, b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    put(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// gzip (RFC 1952) with stored deflate blocks: valid everywhere, byte-for-byte reproducible,
/// and no compression library needed (Wasm compresses little after wasm-opt anyway).
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        out.push(u8::from(last));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_answer() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn the_image_is_a_pure_function_of_the_module() {
        let a = image(b"\0asm\x01\0\0\0", "x.wasm", "0.1.0");
        let b = image(b"\0asm\x01\0\0\0", "x.wasm", "0.1.0");
        let c = image(b"\0asm\x01\0\0\x01", "x.wasm", "0.1.0");
        assert_eq!(a.manifest_digest, b.manifest_digest);
        assert_ne!(a.manifest_digest, c.manifest_digest);
        assert_eq!(a.blobs.len(), 3);
        for (digest, bytes) in &a.blobs {
            assert_eq!(&sha256_hex(bytes), digest);
        }
    }

    #[test]
    fn canonical_json_sorts_keys() {
        assert_eq!(
            canonical_json(&json!({"b": [1, {"d": 1, "c": "x"}], "a": null})),
            r#"{"a":null,"b":[1,{"c":"x","d":1}]}"#
        );
    }
}
