//! `hipaa-mesh package`: each built `.wasm` as an OCI image layout directory, ready to push
//! with standard tools (`skopeo copy oci:DIR:TAG docker://...`, `oras cp --from-oci-layout`).

use crate::oci;
use crate::render_istio::MODULES;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct PackageArgs {
    /// Where the built modules are (`hipaa_authn.wasm`, ...).
    #[arg(long, default_value = "target/wasm")]
    pub wasm_dir: PathBuf,
    /// One OCI image layout per module is written to OUT/hipaa-<module>.
    #[arg(long, default_value = "target/oci")]
    pub out: PathBuf,
    /// The tag recorded in each layout's index (the WasmPlugins pull `:TAG`).
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub tag: String,
}

pub fn run(args: PackageArgs) -> Result<ExitCode, String> {
    let mut missing = Vec::new();
    let mut images = Vec::new();
    for (module, _) in MODULES {
        let file = format!("hipaa_{module}.wasm");
        let path = args.wasm_dir.join(&file);
        match std::fs::read(&path) {
            Ok(wasm) => images.push((module, oci::image(&wasm, &file, &args.tag))),
            Err(e) => missing.push(format!("{}: {e}", path.display())),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "cannot package: {} (build the modules with `make build`)",
            missing.join("; ")
        ));
    }
    println!(
        "{:<18} {:<73} wasm sha256",
        "image", "manifest digest (the WasmPlugin's sha256)"
    );
    for (module, image) in images {
        let dir = args.out.join(format!("hipaa-{module}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| format!("cannot replace {}: {e}", dir.display()))?;
        }
        oci::write_layout(&image, &dir, &args.tag)?;
        println!(
            "{:<18} sha256:{} {}",
            format!("hipaa-{module}"),
            image.manifest_digest,
            image.wasm_sha256
        );
    }
    println!(
        "\nOCI image layouts in {}/hipaa-*; push each with, e.g.:\n  skopeo copy --preserve-digests oci:{}/hipaa-authn:{} docker://REGISTRY/hipaa-authn:{}",
        args.out.display(),
        args.out.display(),
        args.tag,
        args.tag
    );
    Ok(ExitCode::SUCCESS)
}
